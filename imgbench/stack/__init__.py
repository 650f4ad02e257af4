"""The native stack runner: services as local processes on 127.0.0.1, logs in a run directory,
readiness waited for, and exactly the recorded PIDs stopped.

    >>> from imgbench.stack import Stack
    >>> with Stack(Path("runs/stack")) as stack:          # doctest: +SKIP
    ...     stack.up(["prometheus", "pushgateway"])
"""

from imgbench.stack.runner import ServiceStatus, Stack
from imgbench.stack.services import SERVICES

__all__ = ["SERVICES", "ServiceStatus", "Stack"]
