"""The TensorFlow backend: importing this package imports tensorflow (done only when the backend is first used).

If Triton is installed (PyTorch's CUDA builds bring it) and TensorFlow is not imported yet, Triton is imported first:
both bundle LLVM, and loading Triton after TensorFlow aborts the process ("Option 'bitcode-mdindex-threshold'
registered more than once"), which ``torch.compile`` does when it looks for Triton. The other order works.
"""

import importlib.util
import sys

if "tensorflow" not in sys.modules and importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401

from frontend_backends.tensorflow.backend import TensorFlowBackend as Backend  # noqa: E402
from frontend_backends.tensorflow.bench import TensorFlowBench as Bench  # noqa: E402
from frontend_backends.tensorflow.trainer import TensorFlowTrainer as Trainer  # noqa: E402

__all__ = ["Backend", "Bench", "Trainer"]
