"""The TorchServe handler's wire format, without TorchServe: decoding, validation, batching, errors."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch

SIZE = 8


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


class _Doubler(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) * 2.0


@pytest.fixture
def service(handler_module: ModuleType, tmp_path: Path) -> tuple[object, SimpleNamespace]:
    torch.jit.save(torch.jit.script(_Doubler()), str(tmp_path / "model.pt"))
    meta = {"model": "pt_test", "shape": [None, 3, SIZE, SIZE], "num_classes": 3, "max_rows": 4}
    (tmp_path / "model_meta.json").write_text(json.dumps(meta))
    statuses: dict[int, int] = {}
    context = SimpleNamespace(
        system_properties={"model_dir": str(tmp_path)},
        manifest={"model": {"serializedFile": "model.pt"}},
        statuses=statuses,
        set_response_status=lambda code, phrase, idx: statuses.__setitem__(idx, code),
    )
    handler = handler_module.ImgbenchHandler()
    handler.initialize(context)
    return handler, context


def test_batch_is_split_back_per_request(service: tuple) -> None:
    handler, context = service
    a = np.ones((2, 3, SIZE, SIZE), np.float32)
    b = np.full((1, 3, SIZE, SIZE), 3.0, np.float32)
    single = np.full((3, SIZE, SIZE), 5.0, np.float32)  # one image without the batch axis
    responses = handler.handle(
        [{"data": _npy(a)}, {"body": bytearray(_npy(b))}, {"data": _npy(single)}], context
    )
    outputs = [np.load(io.BytesIO(r), allow_pickle=False) for r in responses]
    assert [o.shape for o in outputs] == [(2, 3), (1, 3), (1, 3)]
    assert np.allclose(outputs[0], 2.0) and np.allclose(outputs[1], 6.0) and np.allclose(outputs[2], 10.0)
    assert context.statuses == {}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"\x89PNG not npy", 400, ".npy"),
        (_npy(np.zeros((1, 3, SIZE, SIZE), np.float64)), 400, "float32"),
        (_npy(np.zeros((1, 1, SIZE, SIZE), np.float32)), 400, "shape"),
        (_npy(np.zeros((1, 3, SIZE + 1, SIZE), np.float32)), 400, "shape"),
        (_npy(np.zeros((SIZE, SIZE), np.float32)), 400, "shape"),
        (_npy(np.zeros((5, 3, SIZE, SIZE), np.float32)), 413, "at most 4"),
        (_npy(np.array([{"a": 1}], dtype=object)), 400, "npy"),
    ],
)
def test_bad_request_fails_alone(service: tuple, body: bytes, status: int, message: str) -> None:
    handler, context = service
    good = _npy(np.ones((1, 3, SIZE, SIZE), np.float32))
    responses = handler.handle([{"data": good}, {"data": body}], context)
    assert np.load(io.BytesIO(responses[0])).shape == (1, 3)
    assert context.statuses == {1: status}
    assert message in json.loads(responses[1])["error"]


def test_single_bad_request_raises_prediction_exception(service: tuple, handler_module: ModuleType) -> None:
    handler, context = service
    with pytest.raises(handler_module.PredictionException) as info:
        handler.handle([{"data": b"garbage"}], context)
    assert info.value.error_code == 400
    # The worker survives: the next batch is served.
    response = handler.handle([{"data": _npy(np.ones((1, 3, SIZE, SIZE), np.float32))}], context)
    assert np.load(io.BytesIO(response[0])).shape == (1, 3)
