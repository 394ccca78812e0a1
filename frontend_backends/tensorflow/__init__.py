"""The TensorFlow backend: importing this package imports tensorflow (done only when the backend is first used)."""

from frontend_backends.tensorflow.backend import TensorFlowBackend as Backend
from frontend_backends.tensorflow.trainer import TensorFlowTrainer as Trainer

__all__ = ["Backend", "Trainer"]
