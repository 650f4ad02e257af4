"""Everything checked before the first request of the load: the manifest, the images, the server and
the model, and one idle pass over the pool that gives each image's answer at rest.

Each problem is an ``ImgbenchError`` that says what was wrong and what to do, raised before any load:
an unreachable target, an unknown model, a malformed manifest, a missing dataset.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imgbench.errors import ImgbenchError
from imgbench.load_results import ServerIdentity
from imgbench.manifest import Manifest, load_manifest
from imgbench.paths import ModelRepository
from loadgen.backends import HealthSender, InferenceSender, Sender, error_code, make_client
from loadgen.images import ImagePool, load_pool
from loadgen.options import LoadOptions

log = logging.getLogger(__name__)

MAX_PREPARED_REQUESTS = 64
"""Distinct prepared requests per user: enough variety, bounded memory at large batches."""
POLL_S = 0.5


@dataclass
class Prepared:
    """What every user of this process builds its sender from."""

    options: LoadOptions
    manifest: Manifest | None = None
    pool: ImagePool | None = None
    server: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    """Recorded with the results: pool size, images kept, accuracy at rest, server metadata."""

    def new_sender(self) -> Sender:
        """One sender (one channel) per user, as independent clients would have."""
        o = self.options
        if o.backend == "health":
            return HealthSender(o.target, o.deadline)
        assert self.pool is not None
        client = make_client(
            o.backend, o.target, o.model_repository, o.deadline, o.auth_token, o.auth_key_file
        )
        count = max(1, min(MAX_PREPARED_REQUESTS, len(self.pool) // o.batch_size))
        return InferenceSender(
            client,
            o.model,
            self.pool.batches(o.batch_size, count),
            self.pool.reference_batches(o.batch_size, count),
        )


def _wait(probe: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if probe():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def prepare(options: LoadOptions, calibrate: bool = True) -> Prepared:
    """Check everything and build the image pool. ``calibrate=False`` (the master of a distributed run)
    checks the manifest and the server without loading images."""
    if options.backend == "health":
        return _prepare_health(options)
    repository = ModelRepository(options.model_repository)
    manifest = load_manifest(repository.manifest_path(options.model))
    prepared = Prepared(options, manifest)
    pool = (
        load_pool(manifest, options.dataset, options.images, options.seed, options.image_sizes)
        if calibrate
        else None
    )
    client = make_client(
        options.backend,
        options.target,
        options.model_repository,
        options.deadline,
        options.auth_token,
        options.auth_key_file,
    )
    try:
        if not _wait(client.ready, options.preflight_timeout):
            raise ImgbenchError(
                f"{options.backend} at {options.target} did not answer in {options.preflight_timeout:g} s: "
                f"is it running (`imgbench stack up {options.backend}`), and is --target right?"
            )
        for model in filter(None, (options.model, options.reference_model)):
            if not _wait(lambda model=model: client.ready(model), min(options.preflight_timeout, 10.0)):
                reason = _metadata_error(client, model)
                raise ImgbenchError(
                    f"{options.backend} at {options.target} does not serve model {model!r}"
                    f"{': ' + reason if reason else ''}; is it in the server's model repository?"
                )
        prepared.server = str(_safe_metadata(client, options.model).get("server", options.backend))
        prepared.facts["server_identity"] = _safe_identity(
            client, options.model, prepared.server
        ).model_dump()
        prepared.facts["server_config"] = _safe_server_config(client, options.model)
        if pool is not None:
            prepared.pool = _calibrate(client, options, pool, prepared.facts)
    finally:
        client.close()
    prepared.facts.update(server=prepared.server, manifest_version=manifest.version)
    return prepared


def _prepare_health(options: LoadOptions) -> Prepared:
    if not options.target:
        raise ImgbenchError("--target is required for --backend health (host:port of a gRPC health service)")
    sender = HealthSender(options.target, min(options.deadline, 5.0))
    try:

        def probe() -> bool:
            try:
                sender.send(0)
                return True
            except Exception:
                return False

        if not _wait(probe, options.preflight_timeout):
            raise ImgbenchError(
                f"no gRPC health service answered at {options.target} within {options.preflight_timeout:g} s"
            )
    finally:
        sender.close()
    identity = ServerIdentity(backend="health", implementation="grpc.health.v1", stand_in=False)
    return Prepared(options, server="grpc.health.v1", facts={"server_identity": identity.model_dump()})


def _metadata_error(client: Any, model: str) -> str:
    try:
        client.metadata(model)
    except Exception as exc:
        return f"{error_code(exc)}: {getattr(exc, 'server_message', exc)}"
    return ""


def _safe_metadata(client: Any, model: str) -> dict[str, Any]:
    try:
        return dict(client.metadata(model))
    except Exception:
        return {}


def _safe_identity(client: Any, model: str, server: str) -> ServerIdentity:
    """The server as it reports itself; when it cannot say (an error), the metadata's server name."""
    try:
        return client.identify(model)
    except Exception as exc:
        log.warning("preflight: %s did not identify itself (%s); naming it %r", client.backend, exc, server)
        return ServerIdentity(
            backend=client.backend, implementation=server, stand_in="stand-in" in server.lower()
        )


def _safe_server_config(client: Any, model: str) -> dict[str, Any] | None:
    """The settings the server runs ``model`` with (threads, workers, device); None when it cannot say."""
    try:
        return dict(client.server_config(model))
    except Exception as exc:
        log.warning("preflight: %s did not report its configuration of %s (%s)", client.backend, model, exc)
        return None


def _calibrate(client: Any, options: LoadOptions, pool: ImagePool, facts: dict[str, Any]) -> ImagePool:
    """Each pool image's answer at rest. Images the idle server gets wrong are dropped (unless
    --keep-misclassified), so that under load every wrong answer is a fault, not the model's error rate."""
    b = options.batch_size
    predicted = _answers_at_rest(client, options, options.model, pool)
    right = predicted == pool.labels
    if options.reference_model:
        # The reference's answers are the other expectation: under load each answer is also compared
        # with them (disagreements), e.g. an INT8 model's with its fp32 model's on the same images.
        reference = _answers_at_rest(client, options, options.reference_model, pool)
        pool = pool.with_references(reference)
        facts.update(
            reference_model=options.reference_model,
            agreement_at_rest=round(float((predicted == reference).mean()), 6),
            reference_accuracy_at_rest=round(float((reference == pool.labels).mean()), 6),
        )
    kept = pool if options.keep_misclassified else pool.subset(right)
    facts.update(
        pool_images=len(pool),
        # --image-sizes: images kept per size (each request is one size, the sizes take turns).
        images_per_size=(
            {str(int(v)): int(c) for v, c in zip(*np.unique(kept.sizes, return_counts=True), strict=True)}
            if kept.sizes is not None
            else None
        ),
        pool_kept=len(kept),
        accuracy_at_rest=round(float(right.mean()), 6),
        misclassified_at_rest=int((~right).sum()),
    )
    log.info(
        "preflight: %s serves %s; %d/%d pool images answered right at rest",
        options.backend,
        options.model,
        int(right.sum()),
        len(pool),
    )
    if len(kept) < b:
        raise ImgbenchError(
            f"only {len(kept)} of {len(pool)} images were answered right at rest, less than a batch of {b}: "
            "is this the model's dataset? (--keep-misclassified sends them anyway)"
        )
    return kept


def _batches_covering(pool: ImagePool, batch_size: int) -> int:
    """How many :meth:`ImagePool.batch_indices` batches reach every image of the pool at least once."""
    if pool.sizes is None:
        return -(-len(pool) // batch_size)
    counts = np.unique(pool.sizes, return_counts=True)[1]
    return len(counts) * int(max(-(-c // batch_size) for c in counts))


def _answers_at_rest(client: Any, options: LoadOptions, model: str, pool: ImagePool) -> np.ndarray:
    """``model``'s top-1 for every pool image, one idle request of ``--batch-size`` at a time."""
    b = options.batch_size
    predicted = np.empty(len(pool), dtype=np.int64)
    # Every image once (the last batch of each size wraps around): batches of one size each.
    for index in pool.batch_indices(b, _batches_covering(pool, b)):
        try:
            logits = client.infer(model, pool.stack(index))
        except Exception as exc:
            raise ImgbenchError(
                f"{options.backend} at {options.target} failed an idle request for {model!r} "
                f"at batch {b}: {exc}"
            ) from None
        predicted[index] = np.argmax(logits, axis=1)
    return predicted
