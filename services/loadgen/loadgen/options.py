"""The load generator's settings: Locust command-line options (each also an environment variable),
resolved once into a typed ``LoadOptions`` whose checks name the offending value.

Workers of a distributed run need the same options (or environment) as the master.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imgbench.errors import ImgbenchError
from imgbench.observability import DEFAULT_SLO_SECONDS
from loadgen.arrivals import ARRIVAL_KINDS, ArrivalKind
from loadgen.backends import BACKENDS, default_target
from loadgen.plan import LoadPlan, Mode


def add_arguments(parser: Any) -> None:
    """Register on Locust's parser (``events.init_command_line_parser``)."""

    def add(flag: str, **kwargs: Any) -> None:
        # On the parser itself, not a group: only there does Locust show the option in its web UI.
        env = "IMGBENCH_" + flag.lstrip("-").upper().replace("-", "_")
        parser.add_argument(flag, env_var=env, **kwargs)

    # what
    add(
        "--backend",
        choices=sorted(BACKENDS),
        default="triton",
        help="Model server protocol (default triton).",
    )
    add("--model", default="", help="Model name, e.g. pt_resnet18 (required except for --backend health).")
    add("--batch-size", type=int, default=1, help="Images per request (default 1).")
    add(
        "--target",
        default="",
        help="host:port of the server's gRPC endpoint (default: 127.0.0.1:<its port>).",
    )
    add(
        "--model-repository",
        default="model-repository",
        help="Where the manifests are (default model-repository).",
    )
    add("--dataset", default="", help="ImageFolder root (default: the dataset path in the manifest).")
    add("--images", type=int, default=256, help="Validation images in the pool (default 256).")
    add(
        "--image-sizes",
        default="",
        help="Mixed image sizes in px, e.g. 32,48: pool images preprocessed at each in turn, every request "
        "one size (for a dynamic-shape model, <model>_dynamic; default: the manifest's size).",
    )
    add(
        "--keep-misclassified",
        action="store_true",
        default=False,
        help="Keep images the idle server gets wrong (default: drop them: a wrong answer is then a fault).",
    )
    add(
        "--reference-model",
        default="",
        help="Also compare every answer's top-1 with this model's answer at rest for the same images, on "
        "the same server (e.g. pt_resnet50 for pt_resnet50_int8): each point counts its disagreements "
        "(default: none).",
    )
    add(
        "--auth-token",
        default="",
        is_secret=True,
        help="Sent as 'authorization: Bearer ...' (TorchServe tokens).",
    )
    add(
        "--torchserve-key-file",
        default="",
        help="TorchServe's key_file.json: its inference key is the token.",
    )
    # how
    add(
        "--mode",
        choices=["closed", "open"],
        default="closed",
        help="closed: N users; open: arrivals at a rate.",
    )
    add("--users-steps", default="", help="Closed loop: users per step, e.g. 1,2,4,8 (default: -u).")
    add(
        "--rate", type=float, default=10.0, help="Open loop: requests/s, all processes together (default 10)."
    )
    add("--rate-steps", default="", help="Open loop: rates per step, e.g. 10,20,40 (default: --rate).")
    add(
        "--arrivals",
        choices=list(ARRIVAL_KINDS),
        default="poisson",
        help="Open loop arrivals (default poisson).",
    )
    add(
        "--schedulers",
        type=int,
        default=1,
        help="Open loop: scheduler users in total, ≥ workers (default 1).",
    )
    add(
        "--max-in-flight",
        type=int,
        default=1000,
        help="Open loop: in-flight cap per scheduler; a request due above it is DROPPED (default 1000).",
    )
    add("--step-duration", type=float, default=30.0, help="Seconds per step (default 30).")
    add("--warmup", type=float, default=5.0, help="Seconds excluded at the start of every step (default 5).")
    add(
        "--drain",
        type=float,
        default=5.0,
        help="Seconds for in-flight requests after the last step (default 5).",
    )
    add(
        "--max-requests",
        type=int,
        default=1_000_000,
        help="Per process: no new requests after this many (default 1e6).",
    )
    add("--deadline", type=float, default=10.0, help="Per-call gRPC deadline in seconds (default 10).")
    add(
        "--error-backoff",
        type=float,
        default=0.05,
        help="Closed loop: a user waits this long after an error (default 0.05 s).",
    )
    add("--seed", type=int, default=0, help="Image sample, batch order and Poisson seed (default 0).")
    # where results go
    add(
        "--slo",
        type=float,
        default=DEFAULT_SLO_SECONDS,
        help=f"p99 objective in seconds (default {DEFAULT_SLO_SECONDS}).",
    )
    add("--results-dir", default="runs/loadgen", help="JSON and CSV results (default runs/loadgen).")
    add(
        "--run-id",
        default="",
        help="Results file name and Pushgateway grouping key (default: time-backend-model).",
    )
    add(
        "--metrics-port",
        type=int,
        default=9646,
        help="Prometheus exporter port on the master/local process; 0: off.",
    )
    add("--metrics-host", default="127.0.0.1", help="Exporter address (0.0.0.0 in containers).")
    add(
        "--pushgateway-url",
        default="",
        help="Pushgateway URL; a headless run pushes its metrics there when it ends.",
    )
    add(
        "--preflight-timeout",
        type=float,
        default=30.0,
        help="Seconds to wait for the server and model to be ready.",
    )


def _sizes(text: str) -> list[int]:
    from imgbench.dynamic_shapes import parse_sizes

    return parse_sizes(text) if text.strip() else []


def _numbers(text: str, kind: type, flag: str) -> list[Any]:
    try:
        return [kind(part) for part in re.split(r"[,\s]+", text.strip()) if part]
    except ValueError:
        raise ImgbenchError(f"{flag} must be comma-separated numbers, got {text!r}") from None


def torchserve_token(key_file: str, attempts: int = 5) -> str:
    """TorchServe's current inference key from its ``key_file.json``. TorchServe rewrites the file in
    place when it renews a key, so a read can meet it empty or half written: tried a few times."""
    problem: Exception | None = None
    for _ in range(attempts):
        try:
            return str(json.loads(Path(key_file).read_text(encoding="utf-8"))["inference"]["key"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = exc
            time.sleep(0.02)
    raise ImgbenchError(f"cannot read TorchServe's inference key from {key_file}: {problem}")


def _key_file(parsed: argparse.Namespace) -> str:
    """The key file the token is (re-)read from: TorchServe's, unless a fixed --auth-token was given."""
    if parsed.backend != "torchserve" or parsed.auth_token or not parsed.torchserve_key_file:
        return ""
    torchserve_token(parsed.torchserve_key_file)  # unreadable: say so before the load starts
    return str(parsed.torchserve_key_file)


@dataclass(frozen=True)
class LoadOptions:
    backend: str
    model: str
    batch_size: int
    target: str
    model_repository: Path
    dataset: Path | None
    images: int
    keep_misclassified: bool
    reference_model: str
    auth_token: str
    auth_key_file: str
    """TorchServe's key file: its inference key is re-read when the server renews it (keyguard.py)."""
    mode: Mode
    users_steps: tuple[int, ...]
    rate_steps: tuple[float, ...]
    arrivals: ArrivalKind
    schedulers: int
    max_in_flight: int
    step_duration: float
    warmup: float
    drain: float
    max_requests: int
    deadline: float
    error_backoff: float
    seed: int
    slo: float
    results_dir: Path
    run_id: str
    metrics_port: int
    metrics_host: str
    pushgateway_url: str
    preflight_timeout: float
    image_sizes: tuple[int, ...] = ()
    """``--image-sizes``: the sizes requests take turns at; empty: the manifest's fixed size."""

    @classmethod
    def from_parsed(cls, parsed: argparse.Namespace) -> LoadOptions:
        backend = parsed.backend
        if backend != "health" and not parsed.model:
            raise ImgbenchError(f"--model is required for --backend {backend} (e.g. --model pt_resnet18)")
        if parsed.batch_size < 1:
            raise ImgbenchError(f"--batch-size must be at least 1, got {parsed.batch_size}")
        users = _numbers(parsed.users_steps, int, "--users-steps") or [
            int(getattr(parsed, "num_users", 1) or 1)
        ]
        rates = _numbers(parsed.rate_steps, float, "--rate-steps") or [parsed.rate]
        for flag, value in (
            ("--max-in-flight", parsed.max_in_flight),
            ("--max-requests", parsed.max_requests),
        ):
            if value < 1:
                raise ImgbenchError(f"{flag} must be at least 1, got {value}")
        if parsed.slo <= 0:
            raise ImgbenchError(f"--slo must be positive seconds, got {parsed.slo}")
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        options = cls(
            backend=backend,
            model=parsed.model or "health",
            batch_size=parsed.batch_size,
            target=parsed.target or default_target(backend),
            model_repository=Path(parsed.model_repository),
            dataset=Path(parsed.dataset) if parsed.dataset else None,
            images=parsed.images,
            keep_misclassified=parsed.keep_misclassified,
            image_sizes=tuple(_sizes(getattr(parsed, "image_sizes", "") or "")),
            reference_model=parsed.reference_model,
            auth_token=parsed.auth_token,
            auth_key_file=_key_file(parsed),
            mode=parsed.mode,
            users_steps=tuple(users),
            rate_steps=tuple(rates),
            arrivals=parsed.arrivals,
            schedulers=parsed.schedulers,
            max_in_flight=parsed.max_in_flight,
            step_duration=parsed.step_duration,
            warmup=parsed.warmup,
            drain=parsed.drain,
            max_requests=parsed.max_requests,
            deadline=parsed.deadline,
            error_backoff=parsed.error_backoff,
            seed=parsed.seed,
            slo=parsed.slo,
            results_dir=Path(parsed.results_dir),
            run_id=parsed.run_id or f"{stamp}-{backend}-{parsed.model or 'health'}-b{parsed.batch_size}",
            metrics_port=parsed.metrics_port,
            metrics_host=parsed.metrics_host,
            pushgateway_url=parsed.pushgateway_url,
            preflight_timeout=parsed.preflight_timeout,
        )
        options.plan()  # validate the steps now, before anything starts
        return options

    def plan(self) -> LoadPlan:
        if self.mode == "closed":
            return LoadPlan.closed(list(self.users_steps), self.step_duration, self.warmup, self.drain)
        return LoadPlan.open(
            list(self.rate_steps), self.step_duration, self.warmup, self.schedulers, self.drain
        )

    @property
    def labels(self) -> tuple[str, str, str]:
        """Prometheus label values (imgbench.observability.LABELS order)."""
        return (self.backend, self.model, str(self.batch_size))

    def describe(self) -> dict[str, Any]:
        """The configuration as recorded with the results (the token left out)."""
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        out["auth_token"] = "***" if self.auth_token else ""
        out["users_steps"], out["rate_steps"] = list(self.users_steps), list(self.rate_steps)
        return out
