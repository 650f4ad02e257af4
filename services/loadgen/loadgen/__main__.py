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
    from locust.main import main as locust_main

    locust_main()


if __name__ == "__main__":
    main()
