"""``python -m loadgen [locust options] [imgbench options]``: Locust with imgbench's locustfile.

The container's entry point is this same command. Started directly, the web UI binds 127.0.0.1 (Locust
alone binds every interface); compose and k8s ask for ``--web-host=0.0.0.0`` explicitly."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
DEFAULT_WEB_HOST = "127.0.0.1"


def with_defaults(args: list[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """``args`` with imgbench's locustfile and a loopback web UI unless the caller chose otherwise.

    >>> with_defaults(["-f", "mine.py", "--headless"], environ={})
    ['--web-host', '127.0.0.1', '-f', 'mine.py', '--headless']
    """
    if not any(a in ("-f", "--locustfile") or a.startswith("--locustfile=") for a in args):
        args = ["-f", str(LOCUSTFILE), *args]
    chose_web_host = any(a == "--web-host" or a.startswith("--web-host=") for a in args)
    if not chose_web_host and "LOCUST_WEB_HOST" not in environ:
        args = ["--web-host", DEFAULT_WEB_HOST, *args]
    return args


def main(argv: list[str] | None = None) -> None:
    args = with_defaults(list(sys.argv[1:] if argv is None else argv))
    sys.argv = ["locust", *args]
    if "-h" in args or "--help" in args:
        _print_imgbench_help()
    from locust.main import main as locust_main

    locust_main()


def _print_imgbench_help() -> None:
    """Locust prints its help before it loads a locustfile, so the imgbench options come first here."""
    from locust.argument_parser import LocustArgumentParser

    from loadgen.options import add_arguments

    parser = LocustArgumentParser(prog="python -m loadgen", add_help=False, add_env_var_help=False)
    add_arguments(parser)
    print("imgbench options (each also an environment variable IMGBENCH_<NAME>):")
    help_text = parser.format_help()
    print(help_text[help_text.find("\n\n") + 2 :])
    print("Locust options:")


if __name__ == "__main__":
    main()
