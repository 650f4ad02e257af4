"""The load result: the second contract after the manifest. The load generator writes one
``LoadResult`` per run (``<run_id>.json``); an SLO search writes one that holds its probes' points and
its verdicts. The report, the bench and ``imgbench tune`` read nothing else about load.

Each point names the server it measured as that server reported itself (``ServerIdentity``), so labels
come from data: a run against the real TF Serving says so, one against the stand-in says that.

Readers get a ``LoadResultError`` naming the file and the field for anything missing or malformed.

    >>> from imgbench.load_results import load_load_result
    >>> result = load_load_result(Path("runs/demo/load/triton-pt_resnet18-closed.json"))  # doctest: +SKIP
    >>> [(p.server.label, p.users, p.p99_ms) for p in result.points]                    # doctest: +SKIP
    [('Triton 2.51.0 (python backend)', 1, 3.1), ...]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from imgbench.atomic import atomic_write_text
from imgbench.errors import LoadResultError

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Version 2 added the load generator's own view of each point (``ClientLoad``); a version-1 file
reads with those fields None."""
Deployment = Literal["native", "compose", "k8s"]
ConfigValue = int | float | str | bool


class _Strict(BaseModel):
    # Unknown keys are a writer's bug or a newer schema: fail loudly instead of dropping data.
    model_config = ConfigDict(extra="forbid")


class ServerIdentity(_Strict):
    """The server as it reported itself (metadata or health answer), not as the caller assumed."""

    backend: str = Field(min_length=1, description="Protocol spoken: a name of imgbench.servers.SERVERS.")
    implementation: str = Field(
        min_length=1, description="e.g. 'Triton', 'TorchServe', 'TF Serving stand-in'."
    )
    version: str | None = Field(default=None, description="As the server reported it; None when it does not.")
    stand_in: bool = Field(description="A stand-in for the real server answered.")
    runtime: str | None = Field(
        default=None, description="What runs the model inside, e.g. 'python backend'."
    )

    @property
    def label(self) -> str:
        """How reports name it, e.g. 'Triton 2.51.0 (python backend)',
        'TF Serving stand-in (TensorFlow 2.21.0)'."""
        label = self.implementation + (f" {self.version}" if self.version else "")
        if self.runtime:
            label += f" ({self.runtime})"
        if self.stand_in and "stand-in" not in label.lower():
            label += " (stand-in)"
        return label


class ServerTimings(_Strict):
    """The server's own view of the point's window, in ms per request (the server-side view)."""

    source: str = Field(description="Where the figures come from, e.g. 'triton statistics API'.")
    requests: int | None = Field(default=None, ge=0)
    queue_ms: float | None = Field(default=None, ge=0)
    compute_input_ms: float | None = Field(default=None, ge=0)
    compute_infer_ms: float | None = Field(default=None, ge=0)
    compute_output_ms: float | None = Field(default=None, ge=0)
    handler_ms: float | None = Field(default=None, ge=0)
    total_ms: float | None = Field(default=None, ge=0, description="Time inside the server per request.")


class ClientLoad(_Strict):
    """The load generator's own cost over the point's measured window, all its processes together,
    and the facts its ``client_bound`` verdict rests on (``loadgen.client_cpu``)."""

    processes: int = Field(ge=1, description="Load generator processes measured (master and workers).")
    cpu_s: float = Field(ge=0, description="CPU seconds (user + system) of those processes in the window.")
    utilisation: float = Field(ge=0, description="cpu_s / window: cores the generator kept busy.")
    max_process_utilisation: float = Field(
        ge=0, description="The busiest process's share of one core (Python runs one core per process)."
    )
    host_utilisation: float | None = Field(
        default=None, ge=0, le=1, description="The whole machine's CPU use in the window, 0..1."
    )
    threshold: float = Field(gt=0, description="max_process_utilisation at or above this: saturated.")
    late_sends: int | None = Field(default=None, ge=0, description="Open loop: sends after late_after_ms.")
    late_share: float | None = Field(default=None, ge=0, le=1)
    late_after_ms: float | None = Field(default=None, gt=0)
    late_share_threshold: float | None = Field(default=None, gt=0, le=1)
    lateness_ms: dict[str, float] = Field(
        default_factory=dict, description="Open loop: percentile -> ms the send came after its schedule."
    )
    reasons: list[str] = Field(default_factory=list, description="Why the point is client-bound ([] if not).")
    advice: str = Field(default="", description="What to do about it ('' if not client-bound).")


class LoadPoint(_Strict):
    """One load point: a step of a closed-loop run (users) or of an open-loop run (rate)."""

    run_id: str = Field(min_length=1)
    backend: str = Field(min_length=1)
    server: ServerIdentity
    model: str = Field(min_length=1)
    batch_size: int = Field(ge=1)
    mode: Literal["closed", "open"]
    arrivals: str = ""
    point: str = Field(min_length=1, description="The step's label, unique within its run.")
    users: int | None = Field(default=None, ge=0)
    target_rate: float | None = Field(default=None, ge=0)
    deployment: Deployment = "native"
    seed: int | None = Field(
        default=None,
        description="The load generator's --seed (image sample, batch order, Poisson arrivals). Points "
        "with the same server, model, batch, mode and load are repeats of one point (--repeats N gives "
        "each its own seed); the report's confidence intervals are across them.",
    )

    n: int = Field(ge=0, description="Measured requests with an answer (warm-up excluded).")
    p50_ms: float | None = Field(default=None, ge=0)
    p90_ms: float | None = Field(default=None, ge=0)
    p95_ms: float | None = Field(default=None, ge=0)
    p99_ms: float | None = Field(default=None, ge=0)
    p999_ms: float | None = Field(default=None, ge=0)
    max_ms: float | None = Field(default=None, ge=0)
    mean_ms: float | None = Field(default=None, ge=0)
    percentiles: dict[str, float] = Field(default_factory=dict, description="percentile -> ms, the curve.")
    throughput_rps: float | None = Field(default=None, ge=0)
    images_per_second: float | None = Field(default=None, ge=0)
    requests: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    error_codes: dict[str, int] = Field(default_factory=dict)
    incorrect: int = Field(default=0, ge=0)
    reference_model: str | None = Field(
        default=None,
        description="The model every answer was also compared with (--reference-model), e.g. the fp32 "
        "model for its INT8 variant: each image's top-1 from that model at rest on the same server.",
    )
    disagreements: int | None = Field(
        default=None, ge=0, description="Answers whose top-1 differs from the reference's; None without one."
    )
    window_s: float = Field(default=0.0, ge=0)
    slo_ms: float | None = Field(default=None, gt=0)
    p99_within_slo: bool | None = None

    cpu: str = ""
    cores: int | None = None
    hostname: str = ""

    # The load generator's own view (schema 2; None in version-1 files).
    client_cpu_ms_per_request: float | None = Field(
        default=None, ge=0, description="Generator CPU ms (all its processes) per request in the window."
    )
    client_bound: bool | None = Field(
        default=None,
        description="The client, not the server, limited this point: a generator process saturated its "
        "core, (closed loop) its CPU per request was >= 10% of the latency, or (open loop) its sends slipped "
        "behind schedule. None: not measured (version-1 file).",
    )
    client: ClientLoad | None = None
    server_config: dict[str, ConfigValue] | None = Field(
        default=None, description="The server's tunable knobs this point ran with (imgbench.servers knobs)."
    )
    server_timings: ServerTimings | None = None

    @model_validator(mode="after")
    def _load_matches_mode(self) -> LoadPoint:
        if self.mode == "closed" and self.users is None:
            raise ValueError(f"closed-loop point {self.point!r} has no users")
        if self.mode == "open" and self.target_rate is None:
            raise ValueError(f"open-loop point {self.point!r} has no target_rate")
        return self

    @property
    def images_per_s(self) -> float:
        """Images per second: as measured, else requests per second × batch size."""
        if self.images_per_second is not None:
            return self.images_per_second
        return (self.throughput_rps or 0.0) * self.batch_size

    @property
    def agreement(self) -> float | None:
        """Share of answers under load with the reference model's top-1 (None without a reference)."""
        if self.disagreements is None or not self.n:
            return None
        return 1.0 - self.disagreements / self.n

    @property
    def accuracy(self) -> float | None:
        """Share of answers under load with the label's top-1 (meaningful with --keep-misclassified:
        otherwise the pool holds only images the idle server got right)."""
        return 1.0 - self.incorrect / self.n if self.n else None

    @property
    def load_label(self) -> str:
        if self.mode == "open":
            return f"open {self.target_rate or 0:.0f}/s"
        return f"closed ×{self.users}"


class SloSearch(_Strict):
    """The highest arrival rate whose p99 stayed within the SLO, and the probes that found it."""

    backend: str = Field(min_length=1)
    server: ServerIdentity | None = None
    model: str = Field(min_length=1)
    batch_size: int = Field(default=1, ge=1)
    slo_ms: float = Field(gt=0)
    max_rate: float | None = Field(default=None, description="None: even the start rate failed.")
    p99_ms: float | None = None
    step_s: float = Field(gt=0)
    probes: list[dict[str, Any]] = Field(default_factory=list)
    server_config: dict[str, ConfigValue] | None = None


class TuneProbe(_Strict):
    """One configuration ``imgbench tune`` tried."""

    config: dict[str, ConfigValue]
    images_per_second: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    passed: bool = False
    rejected: str = Field(default="", description="Why the server refused this configuration ('' if it ran).")


class TuneSummary(_Strict):
    """A configuration search for one server and model under a p99 SLO."""

    backend: str = Field(min_length=1)
    model: str = Field(min_length=1)
    strategy: Literal["hill-climb", "grid"]
    slo_ms: float = Field(gt=0)
    budget_s: float = Field(gt=0)
    elapsed_s: float = Field(ge=0)
    default: TuneProbe | None = None
    best: TuneProbe | None = None
    probes: list[TuneProbe] = Field(default_factory=list)
    verdict: str = Field(description="What the search found, in one sentence.")
    best_config_files: list[str] = Field(
        default_factory=list, description="Ready configs written for the best."
    )


class LoadResult(_Strict):
    """One file of load results."""

    schema_version: Literal[1, 2] = SCHEMA_VERSION
    kind: Literal["run", "slo_search", "tune"] = "run"
    run_id: str = Field(min_length=1)
    points: list[LoadPoint] = Field(default_factory=list)
    slo_search: list[SloSearch] = Field(default_factory=list)
    tune: TuneSummary | None = None
    failures: list[str] = Field(default_factory=list, description="Problems of the run, said in the report.")
    stop_reason: str = ""
    elapsed_s: float | None = None
    config: dict[str, Any] = Field(default_factory=dict, description="The load generator's resolved options.")
    plan: dict[str, Any] = Field(default_factory=dict)
    preflight: dict[str, Any] = Field(default_factory=dict)
    hardware: dict[str, Any] = Field(default_factory=dict)
    faults: dict[str, Any] = Field(default_factory=dict)
    timeline: dict[str, dict[str, int]] = Field(default_factory=dict)


def _field_path(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "(top level)"


def parse_load_result(data: object, source: str) -> LoadResult:
    """Validate ``data`` (a decoded JSON document); errors name ``source`` and every bad field."""
    if isinstance(data, dict) and data.get("schema_version") not in (None, *READABLE_VERSIONS):
        raise LoadResultError(
            f"{source}: schema_version {data['schema_version']!r} is not one of {READABLE_VERSIONS}; "
            "it was written by another imgbench version: rerun the load or upgrade imgbench"
        )
    if isinstance(data, dict) and "schema_version" not in data:
        raise LoadResultError(
            f"{source}: no schema_version: not a load result, or one written before the schema "
            "(rerun the load)"
        )
    try:
        return LoadResult.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_field_path(e['loc'])}: {e['msg']} (got {e.get('input')!r:.80})" for e in exc.errors()
        )
        raise LoadResultError(f"{source} is not a valid load result: {problems}") from None


def load_load_result(path: Path) -> LoadResult:
    """Read and validate one load result file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LoadResultError(f"load result {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise LoadResultError(f"load result {path} is unreadable: {exc}") from None
    return parse_load_result(data, str(path))


def write_load_result(path: Path, result: LoadResult) -> Path:
    """Validate again (a writer's bug fails here, not in the report) and write atomically, stamped
    with the current ``SCHEMA_VERSION`` (a version-1 result read and written again is version 2)."""
    checked = LoadResult.model_validate({**result.model_dump(), "schema_version": SCHEMA_VERSION})
    atomic_write_text(Path(path), checked.model_dump_json(indent=2) + "\n")
    return Path(path)
