"""imgbench's locustfile: gRPC users for TorchServe, Triton and TF Serving (see loadgen/__init__.py).

    locust -f services/loadgen/loadgen/locustfile.py --headless --backend triton --model pt_resnet18 \\
        --mode open --rate 50 --step-duration 30 --warmup 5
    python -m loadgen ...                               # the same, as the container runs it
    python -m loadgen --master ... / python -m loadgen --worker ...   (same imgbench options on both)
"""

from __future__ import annotations

import sys
from pathlib import Path

# gevent-safe gRPC before any channel exists (docs/platform-notes.md: without it calls block the event loop).
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

from locust import events  # noqa: E402

if __package__ in (None, ""):  # run by path (`locust -f .../locustfile.py`): make `loadgen` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadgen import session  # noqa: E402
from loadgen.options import add_arguments  # noqa: E402
from loadgen.shape import PlanShape  # noqa: E402
from loadgen.users import USER_CLASSES, HealthCheckUser  # noqa: E402

# Locust runs the User classes it finds in this module: one per registered server, plus the health check.
globals().update({cls.__name__: cls for cls in USER_CLASSES.values()})
__all__ = ["HealthCheckUser", "PlanShape", *(cls.__name__ for cls in USER_CLASSES.values())]

events.init_command_line_parser.add_listener(add_arguments)
events.init.add_listener(lambda environment, **_: session.on_init(environment))
events.test_start.add_listener(lambda environment, **_: session.on_test_start(environment))
events.test_stop.add_listener(lambda environment, **_: session.on_test_stop(environment))
events.quitting.add_listener(lambda environment, **_: session.on_quitting(environment))
