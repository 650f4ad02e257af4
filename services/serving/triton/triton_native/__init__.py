"""Native Triton: the python-backend repository assembled from the ONNX one, and the tritonserver
binary bundled in nvidia-pytriton started with the environment it needs (docs/platform-notes.md)."""
