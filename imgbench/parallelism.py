"""Thread settings of every model server, as data: one default for all, each server's own words.

Without explicit settings each runtime picks its own (ONNX Runtime and TF Serving take every core, the
TorchServe handler 1), so a comparison would measure thread policy, not servers. Every server config
imgbench writes carries these numbers, and every load point records them (``LoadPoint.server_config``)
so the report can show what each server ran with.

    >>> server_threads("tfserving")
    {'intra_op_threads': 1, 'inter_op_threads': 1}
    >>> tfserving_thread_flags()
    ['--tensorflow_intra_op_parallelism=1', '--tensorflow_inter_op_parallelism=1']
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Threads:
    """Per worker/instance: intra-op threads (one operator's parallelism) and inter-op threads."""

    intra_op: int = 1
    inter_op: int = 1
    workers: int = 1
    """TorchServe workers per model, Triton instances per model (TF Serving has one session)."""


DEFAULT_THREADS = Threads()
"""Equal across servers: one worker/instance with one intra-op and one inter-op thread (see
docs/platform-notes.md: more threads than cores oversubscribe a small machine)."""


THREAD_KNOBS: dict[str, str] = {
    "workers": "workers",
    "instance_count": "workers",
    "torch_threads": "intra_op",
    "ort_threads": "intra_op",
    "intra_op_threads": "intra_op",
    "inter_op_threads": "inter_op",
}
"""Knob name (``imgbench.servers``) -> the :class:`Threads` field it sets."""


def server_threads(server: str) -> dict[str, int | float]:
    """The thread settings of ``server`` under its own knob names, at their registry defaults."""
    from imgbench.servers import get_server

    return {k.name: k.default for k in get_server(server).knobs if k.name in THREAD_KNOBS}


def tfserving_thread_flags(threads: Threads = DEFAULT_THREADS) -> list[str]:
    """TF Serving's command-line flags for ``threads``."""
    return [
        f"--tensorflow_intra_op_parallelism={threads.intra_op}",
        f"--tensorflow_inter_op_parallelism={threads.inter_op}",
    ]
