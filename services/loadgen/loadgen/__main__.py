"""``python -m loadgen [locust options] [imgbench options]``: Locust with imgbench's locustfile.

The container's entry point is this same command."""

from __future__ import annotations

import sys
from pathlib import Path

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a in ("-f", "--locustfile") or a.startswith("--locustfile=") for a in args):
        args = ["-f", str(LOCUSTFILE), *args]
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
