"""The Locust load shape that follows the run's plan: a step sweep over concurrency (closed loop) or
over arrival rate (open loop, where the users are the schedulers and the rate comes from the plan),
then the drain, then the end of the run. Works headless and from the web UI."""

from __future__ import annotations

import logging
from typing import ClassVar

from locust import LoadTestShape

from imgbench.errors import ImgbenchError
from loadgen.session import current

log = logging.getLogger(__name__)


class PlanShape(LoadTestShape):
    """Users per step from ``--users-steps`` (or ``-u``), rates from ``--rate-steps`` (or ``--rate``)."""

    use_common_options: ClassVar[bool] = True
    """-u is the single step's users when there are no --users-steps; -t stays a hard time bound."""

    def __init__(self) -> None:
        super().__init__()
        self.fresh = True

    def reset_time(self) -> None:
        super().reset_time()
        self.fresh = True

    def tick(self) -> tuple[int, float, list] | None:
        session = current()
        if self.fresh:
            # The first tick of a test comes before Locust's test_start: read the options now (the web
            # UI may have changed them), so the first step already has the right users.
            self.fresh = False
            try:
                session.configure()
            except ImgbenchError as exc:
                log.error("cannot start the load: %s", exc)
                return None
        if session.options is None:
            return None
        plan = session.plan
        run_time = self.get_run_time()
        if run_time >= plan.total_s:
            return None
        step = plan.point_at(run_time)
        # All of a step's users at once: the warm-up, not a slow ramp, absorbs the start.
        return step.users, float(max(step.users, 1) * 10), list(self.runner.environment.user_classes)
