"""The Locust load shape that follows the run's plan: a step sweep over concurrency (closed loop) or
over arrival rate (open loop, where the users are the schedulers and the rate comes from the plan),
then the drain, then the end of the run. Works headless and from the web UI."""

from __future__ import annotations

from typing import ClassVar

from locust import LoadTestShape

from loadgen.session import current


class PlanShape(LoadTestShape):
    """Users per step from ``--users-steps`` (or ``-u``), rates from ``--rate-steps`` (or ``--rate``)."""

    use_common_options: ClassVar[bool] = True
    """-u is the single step's users when there are no --users-steps; -t stays a hard time bound."""

    def tick(self) -> tuple[int, float, list] | None:
        session = current()
        if session.options is None:
            return None  # the preflight failed (logged)
        plan = session.plan
        run_time = self.get_run_time()
        if run_time >= plan.total_s:
            return None
        step = plan.point_at(run_time)
        # All of a step's users at once: the warm-up, not a slow ramp, absorbs the start.
        return step.users, float(max(step.users, 1) * 10), list(self.runner.environment.user_classes)
