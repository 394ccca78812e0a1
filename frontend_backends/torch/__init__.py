"""The PyTorch backend: importing this package imports torch (done only when the backend is first used)."""

from frontend_backends.torch.backend import TorchBackend as Backend
from frontend_backends.torch.bench import TorchBench as Bench
from frontend_backends.torch.trainer import TorchTrainer as Trainer

__all__ = ["Backend", "Bench", "Trainer"]
