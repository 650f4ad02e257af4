"""``python -m loadgen [locust options] [imgbench options]``: Locust with imgbench's locustfile.

The container's entry point is this same command. Started directly, the web UI binds 127.0.0.1 (Locust
alone binds every interface); compose and k8s ask for ``--web-host=0.0.0.0`` explicitly.

A local run uses one load process per core it may run on (Locust's ``--processes``: a master and that
many forked workers, whose histograms and CPU samples merge on the master): one Python process sends
only as fast as one core runs it. ``--processes 0`` (or ``LOCUST_PROCESSES=0``) is one process;
``--master``/``--worker`` runs and an explicit ``--processes`` are left as they are; nothing is pinned."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
DEFAULT_WEB_HOST = "127.0.0.1"
LOOPBACK = "127.0.0.1"


def usable_cores() -> int:
    """Cores this process may run on (its affinity, as the user or the container set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def chose_processes(args: list[str], environ: Mapping[str, str]) -> bool:
    """The caller already said how many processes: a flag or Locust's variable, a master or a worker."""
    flags = ("--processes", "--master", "--worker")
    if any(a in flags or a.startswith(tuple(f"{f}=" for f in flags)) for a in args):
        return True
    return any(environ.get(v) for v in ("LOCUST_PROCESSES", "LOCUST_MODE_MASTER", "LOCUST_MODE_WORKER"))


def _flag_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    return None


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def with_defaults(
    args: list[str],
    environ: Mapping[str, str] = os.environ,
    cores: int | None = None,
    port: int | None = None,
) -> list[str]:
    """``args`` with imgbench's locustfile, a loopback web UI and one load process per core (``cores``,
    default ``usable_cores()``; none forked on one core) unless the caller chose otherwise.

    A run that forks its own workers gets a free loopback port for them (``port``, default a free one):
    Locust's fixed 5557 on every interface would let two runs on one machine take each other's workers.

    >>> with_defaults(["-f", "mine.py", "--headless"], environ={}, cores=4, port=5600)[4:]
    ['--headless', '--processes', '4', '--master-bind-host', '127.0.0.1', '--master-bind-port', '5600', \
'--master-port', '5600']
    >>> with_defaults(["-f", "mine.py", "--worker"], environ={}, cores=4)
    ['--web-host', '127.0.0.1', '-f', 'mine.py', '--worker']
    """
    cores = usable_cores() if cores is None else cores
    if (
        cores > 1
        and not chose_processes(args, environ)
        and not {"-h", "--help", "-V", "--version"} & set(args)
    ):
        args = [*args, "--processes", str(cores)]
    forks = _flag_value(args, "--processes") or environ.get("LOCUST_PROCESSES") or "0"
    own_workers = forks != "0" and "--worker" not in args and not environ.get("LOCUST_MODE_WORKER")
    chose_port = any(_flag_value(args, f) for f in ("--master-bind-port", "--master-port"))
    if own_workers and not chose_port:
        port = free_loopback_port() if port is None else port
        if _flag_value(args, "--master-bind-host") is None:
            args = [*args, "--master-bind-host", LOOPBACK]
        args = [*args, "--master-bind-port", str(port), "--master-port", str(port)]
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
