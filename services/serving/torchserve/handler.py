"""TorchServe handler for imgbench's PyTorch models: batched TorchScript inference on NumPy tensors.

Wire format (the contract with the load generator; see docs/architecture.md):

- Request: the body of input key ``data`` (TorchServe's gRPC ``PredictionsRequest.input["data"]``, or
  the raw HTTP body of ``POST /predictions/<model>`` sent as ``application/octet-stream``) is a NumPy
  ``.npy`` file, i.e. the bytes ``np.save`` writes, holding a C-order ``float32`` array shaped
  ``[N, 3, H, W]`` (NCHW, already normalized with the manifest's mean/std). ``N`` ≥ 1; ``H``/``W``
  must equal the model's image size. A single image may be sent as ``[3, H, W]``.
- Response: one per request, the ``.npy`` bytes of a ``float32`` array ``[N, num_classes]`` of logits
  (softmax is left to the client).
- Errors: a request that is not ``.npy``, has another dtype, rank, channel count or image size, or
  more than ``max_rows`` images gets a 4xx error for that request only (``PredictionException``, code
  400 or 413); the other requests of the batch are answered and the worker keeps running.

Batching: TorchServe collects up to ``batchSize`` requests for at most ``maxBatchDelay`` ms (both in
the archive's model-config.yaml). The handler concatenates the valid requests of a batch into one
forward pass and splits the logits back per request; a request of N images counts as N rows.

The model's expected input comes from ``model_meta.json``, which the trainer puts in the archive.
Self-contained on purpose: numpy, torch and ts only (the official TorchServe image has no imgbench).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from typing import Any

import numpy as np
import torch

try:
    from ts.utils.util import PredictionException
except ImportError:  # unit tests run without TorchServe installed

    class PredictionException(Exception):  # type: ignore[no-redef]
        def __init__(self, message: str, error_code: int = 500):
            super().__init__(message)
            self.message = message
            self.error_code = error_code


logger = logging.getLogger(__name__)

META_FILE = "model_meta.json"
NPY_MAGIC = b"\x93NUMPY"


class RequestError(ValueError):
    """A client's request is malformed; ``status`` is the HTTP code it maps to."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode_request(body: Any, channels: int, height: int, width: int, max_rows: int) -> np.ndarray:
    """The float32 NCHW array in one request body, or ``RequestError`` saying what is wrong with it."""
    if isinstance(body, dict):  # TorchServe hands over {"data": ...} or {"body": ...}
        body = body.get("data", body.get("body"))
    if isinstance(body, bytearray | memoryview):
        body = bytes(body)
    if not isinstance(body, bytes) or not body.startswith(NPY_MAGIC):
        raise RequestError("request body must be a NumPy .npy file (np.save bytes) in input 'data'")
    array = _read_npy(body)
    if array.dtype != np.float32:
        raise RequestError(f"dtype must be float32, got {array.dtype}")
    if array.ndim == 3:
        array = array[None]
    expected = (channels, height, width)
    if array.ndim != 4 or tuple(array.shape[1:]) != expected or array.shape[0] < 1:
        raise RequestError(
            f"shape must be [N, {channels}, {height}, {width}] with N >= 1, got {list(array.shape)}"
        )
    if array.shape[0] > max_rows:
        raise RequestError(f"{array.shape[0]} images in one request; at most {max_rows}", status=413)
    return np.ascontiguousarray(array)


def _parse_header(body: bytes) -> tuple[np.dtype, tuple[int, ...], int] | None:
    """(dtype, shape, data offset) of a C-order .npy body, parsed once per distinct header: every
    request of a load carries the same one, and np.load's literal_eval of it cost ~0.3 ms per request
    in the worker (py-spy, docs/benchmarks.md). None: not a header we read here (np.load decides)."""
    if len(body) < 10 or body[6:8] != b"\x01\x00":
        return None
    end = 10 + int.from_bytes(body[8:10], "little")
    header = body[:end]
    if header not in _HEADERS:
        stream = io.BytesIO(header)
        try:
            np.lib.format.read_magic(stream)
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        except ValueError:
            return None
        if fortran or dtype.hasobject or len(_HEADERS) >= _MAX_HEADERS:
            return None
        _HEADERS[header] = (dtype, tuple(shape), end)
    return _HEADERS[header]


_HEADERS: dict[bytes, tuple[np.dtype, tuple[int, ...], int]] = {}
_MAX_HEADERS = 256


def _read_npy(body: bytes) -> np.ndarray:
    """np.load's answer for ``body``, without its per-request header parse; trailing bytes refused."""
    parsed = _parse_header(body)
    if parsed is None:
        stream = io.BytesIO(body)
        try:
            array = np.load(stream, allow_pickle=False)
        except ValueError as exc:
            raise RequestError(f"unreadable .npy body: {exc}") from None
        end = stream.tell()
    else:
        dtype, shape, offset = parsed
        count = int(np.prod(shape, dtype=np.int64))
        end = offset + count * dtype.itemsize
        if end > len(body):
            raise RequestError(
                f"unreadable .npy body: {len(body) - offset} data bytes for shape {list(shape)}, "
                f"{count * dtype.itemsize} needed"
            )
        array = np.frombuffer(body, dtype=dtype, count=count, offset=offset).reshape(shape)
    if end != len(body):  # np.load ignores trailing bytes: an oversized payload is malformed
        raise RequestError(f".npy body has {len(body) - end} bytes after its array's data")
    return array


def encode_logits(logits: np.ndarray) -> bytes:
    array = np.ascontiguousarray(logits, dtype=np.float32)
    header = _ENCODED_HEADERS.get(array.shape)
    if header is None:  # the header depends only on the shape: built once per shape, not per request
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, np.lib.format.header_data_from_array_1_0(array))
        header = buffer.getvalue()
        if len(_ENCODED_HEADERS) < _MAX_HEADERS:
            _ENCODED_HEADERS[array.shape] = header
    return header + array.tobytes()


_ENCODED_HEADERS: dict[tuple[int, ...], bytes] = {}


class ImgbenchHandler:
    """TorchServe custom handler (``initialize`` + ``handle``), no BaseHandler needed."""

    def __init__(self) -> None:
        self.model: torch.jit.ScriptModule | None = None
        self.meta: dict[str, Any] = {}
        self.initialized = False

    def initialize(self, context: Any) -> None:
        # One thread per worker: several workers with all cores each oversubscribe a small machine.
        torch.set_num_threads(int(os.environ.get("IMGBENCH_TORCH_THREADS", "1")))
        model_dir = context.system_properties.get("model_dir")
        serialized = context.manifest["model"]["serializedFile"]
        with open(os.path.join(model_dir, META_FILE), encoding="utf-8") as handle:
            self.meta = json.load(handle)
        self.model = torch.jit.load(os.path.join(model_dir, serialized), map_location="cpu").eval()
        self._warm_up(int(context.system_properties.get("batch_size") or 1))
        self.initialized = True
        logger.info("loaded %s, input %s", self.meta.get("model"), self.meta.get("shape"))

    def _warm_up(self, batch_size: int) -> None:
        """TorchScript profiles and re-optimises per input shape on first use (0.3-2.9 s per new batch
        size measured under load, stalling every queued request): pay it here, twice per size (profile,
        then optimise), for every batch TorchServe can form."""
        _, channels, height, width = self.meta["shape"]
        with torch.inference_mode():
            for rows in range(1, batch_size + 1):
                for _ in range(2):
                    self.model(torch.zeros(rows, channels, height, width))  # type: ignore[misc]

    def handle(self, data: list[Any], context: Any) -> list[Any]:
        """One response per request: logits .npy bytes, or a per-request error."""
        _, channels, height, width = self.meta["shape"]
        max_rows = int(self.meta.get("max_rows", 128))
        arrays: list[np.ndarray | None] = []
        errors: dict[int, RequestError] = {}
        for index, request in enumerate(data):
            try:
                arrays.append(decode_request(request, channels, height, width, max_rows))
            except RequestError as exc:
                arrays.append(None)
                errors[index] = exc
        valid = [a for a in arrays if a is not None]
        outputs: list[np.ndarray] = []
        if valid:
            batch = torch.from_numpy(np.concatenate(valid))
            with torch.inference_mode():
                logits = self.model(batch).float().numpy()  # type: ignore[misc]
            outputs = np.split(logits, np.cumsum([a.shape[0] for a in valid])[:-1])
        if errors and len(data) == 1:
            # A batch of one: the exception becomes this request's 4xx answer.
            error = errors[0]
            raise PredictionException(str(error), error.status)
        responses: list[Any] = []
        results = iter(outputs)
        for index in range(len(data)):
            if index in errors:
                # TorchServe answers the whole batch with one code if we raise, so a bad request among
                # good ones gets its error as the response body; context sets its status alone.
                self._set_status(context, index, errors[index])
                responses.append(json.dumps({"code": errors[index].status, "error": str(errors[index])}))
            else:
                responses.append(encode_logits(next(results)))
        return responses

    @staticmethod
    def _set_status(context: Any, index: int, error: RequestError) -> None:
        # Older TorchServe contexts lack per-request status; the JSON body still says what went wrong.
        with contextlib.suppress(AttributeError, TypeError):
            context.set_response_status(code=error.status, phrase=str(error), idx=index)


_service = ImgbenchHandler()


def handle(data: list[Any] | None, context: Any) -> list[Any] | None:
    """TorchServe's module-level entry point."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
