"""Triton python-backend model that runs an ONNX export with ONNX Runtime.

Native Triton (nvidia-pytriton's tritonserver) has only the python backend, so every
``triton/<model>/<version>/model.onnx`` is served through this file, copied next to it in
``triton-python/<model>/<version>/`` by the native launcher (services/serving/triton/triton_native).
Containers use the official image's onnxruntime backend on the same ONNX files instead.

Habits (docs/style.md): the config is parsed once in ``initialize``; ``execute`` concatenates the
requests of a dynamic batch into one ORT run and returns exactly one response per request, with
errors set on that response, never raised.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.logger = pb_utils.Logger
        config = json.loads(args["model_config"])
        self.model_name = config["name"]
        self.version = args["model_version"]
        (input_config,) = config["input"]
        (output_config,) = config["output"]
        self.input_name = input_config["name"]
        self.output_name = output_config["name"]
        self.input_dtype = pb_utils.triton_string_to_numpy(input_config["data_type"])
        self.output_dtype = pb_utils.triton_string_to_numpy(output_config["data_type"])
        self.image_dims = [int(d) for d in input_config["dims"]]
        self.max_batch_size = int(config.get("max_batch_size", 0))

        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        # One thread per instance by default: on a 2-core machine more threads only oversubscribe.
        # The onnxruntime backend's parameter keys (imgbench.triton_config), so both variants agree.
        options.intra_op_num_threads = int(
            parameters.get("intra_op_thread_count", os.environ.get("ORT_THREADS", "1"))
        )
        options.inter_op_num_threads = int(parameters.get("inter_op_thread_count", "1"))
        onnx_path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        self.logger.log_info(
            f"{self.model_name} v{self.version}: ONNX Runtime {ort.__version__} on {onnx_path}, "
            f"input {self.input_name} {self.image_dims}, output {self.output_name}"
        )

    def _problem(self, batch: np.ndarray) -> str | None:
        """Why ``batch`` is not something this model can run, naming the offending value."""
        if batch.dtype != self.input_dtype:
            return f"input '{self.input_name}' has dtype {batch.dtype}, expected {np.dtype(self.input_dtype)}"
        # -1: a dynamic axis (height/width of a dynamic-shape export), any size is fine.
        if batch.ndim != len(self.image_dims) + 1 or any(
            want not in (-1, got) for got, want in zip(batch.shape[1:], self.image_dims, strict=True)
        ):
            expected = ", ".join(map(str, self.image_dims))
            return f"input '{self.input_name}' has shape {list(batch.shape)}, expected [N, {expected}]"
        if batch.shape[0] < 1:
            return f"input '{self.input_name}' has an empty batch"
        if not np.isfinite(batch).all():
            return f"input '{self.input_name}' contains NaN or infinity"
        return None

    def execute(self, requests: list) -> list:
        batches: list[np.ndarray | None] = []
        responses: list = [None] * len(requests)
        for index, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
            if tensor is None:
                responses[index] = self._error(f"request has no input named '{self.input_name}'")
                batches.append(None)
                continue
            batch = tensor.as_numpy()
            if problem := self._problem(batch):
                responses[index] = self._error(problem)
                batches.append(None)
                continue
            batches.append(batch)

        valid = [b for b in batches if b is not None]
        if valid:
            try:
                (logits,) = self.session.run([self.output_name], {self.input_name: np.concatenate(valid)})
            except Exception as exc:  # an ORT failure must become an error response, not a crash
                message = f"ONNX Runtime failed on a batch of {sum(len(b) for b in valid)}: {exc}"
                self.logger.log_error(message)
                return [r if r is not None else self._error(message) for r in responses]
            logits = logits.astype(self.output_dtype, copy=False)
            start = 0
            for index, batch in enumerate(batches):
                if batch is None:
                    continue
                rows = logits[start : start + len(batch)]
                start += len(batch)
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(self.output_name, np.ascontiguousarray(rows))]
                )
        return responses

    def _error(self, message: str):
        return pb_utils.InferenceResponse(
            output_tensors=[],
            error=pb_utils.TritonError(f"{self.model_name}: {message}", pb_utils.TritonError.INVALID_ARG),
        )

    def finalize(self) -> None:
        self.logger.log_info(f"{self.model_name} v{self.version}: unloaded")
