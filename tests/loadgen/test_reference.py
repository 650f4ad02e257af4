"""--reference-model: every answer under load is also compared with the reference model's answer at
rest for the same images (an INT8 model's with its fp32 model's); each point counts disagreements."""

from __future__ import annotations

import numpy as np
from loadgen.backends import InferenceSender
from loadgen.images import ImagePool
from loadgen.recorder import Recorder, Tally
from loadgen.results import summarize
from test_sender import ScriptedClient

from imgbench.load_results import LoadPoint


def test_each_answer_is_checked_against_the_label_and_the_reference() -> None:
    # Label 1, reference top-1 2: the reference model got this image wrong at rest.
    label_right, reference_right, both_wrong = (
        np.array([[0.1, 0.9, 0.0]]),
        np.array([[0.1, 0.0, 0.9]]),
        np.array([[0.9, 0.1, 0.0]]),
    )
    client = ScriptedClient([label_right, label_right, reference_right, both_wrong])
    sender = InferenceSender(
        client, "m_int8", [(np.zeros((1, 2), np.float32), np.array([1]))], references=[np.array([2])]
    )
    answers = [sender.send(i) for i in range(4)]
    assert [(a.correct, a.agrees) for a in answers] == [
        (True, False),
        (True, False),
        (False, True),
        (False, False),
    ]
    # A byte-identical repeat of an answer that disagrees is parsed again, never taken as known-good.
    assert client.parsed == 4


def test_without_a_reference_nothing_is_compared() -> None:
    client = ScriptedClient([np.array([[0.1, 0.9, 0.0]])])
    sender = InferenceSender(client, "m", [(np.zeros((1, 2), np.float32), np.array([1]))])
    assert sender.send(0).agrees is None


def test_pool_references_follow_subsets_and_batches() -> None:
    pool = ImagePool(np.zeros((4, 1)), np.array([0, 1, 2, 0]), ("a", "b", "c", "d"))
    assert pool.reference_batches(2, 2) is None
    pool = pool.with_references(np.array([0, 2, 2, 1]))
    kept = pool.subset(np.array([True, False, True, True]))
    assert kept.references is not None and kept.references.tolist() == [0, 2, 1]
    assert [b.tolist() for b in kept.reference_batches(2, 2) or []] == [[0, 2], [1, 0]]


def test_disagreements_are_counted_merged_and_summarised() -> None:
    worker, master = Recorder(), Recorder()
    for disagree in (False, True, True):
        worker.record(
            0, measured=True, elapsed_s=1.0, latency_s=0.01, outcome="ok", images=1, disagree=disagree
        )
    worker.record(0, measured=False, elapsed_s=0.1, latency_s=0.01, outcome="ok", images=1, disagree=True)
    master.merge(worker.drain())
    tally: Tally = master.points[0]
    assert tally.disagreements == 2 and tally.histogram.get_total_count() == 3
    row = summarize(tally, 1.0)
    point = LoadPoint.model_validate(
        {
            **row,
            "run_id": "r",
            "backend": "triton",
            "server": {"backend": "triton", "implementation": "Triton", "stand_in": False},
            "model": "pt_x_int8",
            "batch_size": 1,
            "mode": "closed",
            "point": "u1",
            "users": 1,
            "reference_model": "pt_x",
        }
    )
    assert point.disagreements == 2 and point.agreement is not None
    assert abs(point.agreement - 1 / 3) < 1e-9 and point.accuracy == 1.0
