"""TF Serving stand-in: the TF Serving gRPC API (PredictionService.Predict and GetModelMetadata,
ModelService.GetModelStatus) over the same model base path / version layout and models.config as
``tensorflow_model_server``, served by TensorFlow in Python.

It exists because the real binary is in no registry this machine reaches; containers run the
official tensorflow/serving image instead. It says so in its startup log, in its metadata (key
``server`` of GetModelMetadata) and in every metric (label ``implementation``).

    .venv/tfserving/bin/python -m tfserving_standin --port 8500 --rest_api_port 8501 \\
        --model_config_file models.config --enable_batching
"""

NAME = "TF Serving stand-in"
IMPLEMENTATION_LABEL = "tf-serving-stand-in"
