"""TorchServe handler of the synthetic slow model (tests/synthetic_slow_model.py): each execution of a
batch sleeps ``fixed_ms + per_image_ms × images`` (the costs come from ``cost.json`` in the archive),
so throughput rises with the batch size in a known way, and answers each image by its brightness
(class 1 when its mean is above zero, else class 0), so the load generator can check every answer.
With a ``record`` path in ``cost.json`` it appends one line per execution, "<batchSize> <requests>",
so a test can see the batches TorchServe formed.

Wire format: the imgbench handler's (services/serving/torchserve/handler.py): a ``.npy`` float32
``[N, C, H, W]`` body in input ``data``; ``.npy`` float32 ``[N, 2]`` logits back. Self-contained:
TorchServe imports this file alone from the archive.
"""

from __future__ import annotations

import io
import json
import os
import time
from typing import Any

import numpy as np

COST_FILE = "cost.json"


class SlowModel:
    def __init__(self) -> None:
        self.fixed_s = 0.0
        self.per_image_s = 0.0
        self.record = ""
        self.batch_size = 0
        self.initialized = False

    def initialize(self, context: Any) -> None:
        model_dir = context.system_properties.get("model_dir")
        with open(os.path.join(model_dir, COST_FILE), encoding="utf-8") as handle:
            cost = json.load(handle)
        self.fixed_s = float(cost["fixed_ms"]) / 1000
        self.per_image_s = float(cost["per_image_ms"]) / 1000
        self.record = cost.get("record", "")
        self.batch_size = int(context.system_properties.get("batch_size") or 1)
        self.initialized = True

    def handle(self, data: list[Any]) -> list[bytes]:
        arrays = []
        for request in data:
            body = request.get("data", request.get("body")) if isinstance(request, dict) else request
            arrays.append(np.load(io.BytesIO(bytes(body)), allow_pickle=False))
        images = sum(len(a) for a in arrays)
        time.sleep(self.fixed_s + self.per_image_s * images)  # one execution of the whole batch
        if self.record:
            with open(self.record, "a", encoding="utf-8") as handle:
                handle.write(f"{self.batch_size} {len(data)}\n")
        responses = []
        for array in arrays:
            brightness = array.reshape(len(array), -1).mean(axis=1, dtype=np.float32)
            logits = np.stack([-brightness, brightness], axis=1).astype(np.float32)
            buffer = io.BytesIO()
            np.save(buffer, logits, allow_pickle=False)
            responses.append(buffer.getvalue())
        return responses


_model = SlowModel()


def handle(data: list[Any] | None, context: Any) -> list[bytes] | None:
    """TorchServe's module-level entry point."""
    if not _model.initialized:
        _model.initialize(context)
    if data is None:
        return None
    return _model.handle(data)
