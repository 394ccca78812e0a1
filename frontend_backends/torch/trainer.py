"""PyTorch trainer: eager steps with ``backward()``, ``torch.nn.utils`` clipping and ``torch.optim`` optimizers.

Data-parallel training (``torch.distributed``, initialised by the caller) sums the gradients of the workers with
one ``all_reduce`` per step; each worker's loss is normalised by the global batch, so the sum is the gradient of
the global batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from frontend_backends.torch.optim import optimizer_class, torch_kwargs
from frontend_backends.train_base import NativeModel, OptimizerSpec, StepOptions, StepResult, Trainer

#: models with fewer trainable parameters train on one thread (see :meth:`TorchTrainer.limit_threads`)
SMALL_MODEL_PARAMS = 1_000_000
class TorchModule(NativeModel):
    """A ``torch.nn.Module`` returned by an rf-style ``get_model``, as the engine sees it."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def parameters(self) -> dict[str, Any]:
        return dict(self.module.state_dict())

    def trainable(self) -> list[tuple[str, Any]]:
        return [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})

    def set_train_flag(self, train: bool) -> None:
        self.module.train(train)


class TorchTrainer(Trainer):
    """The :class:`Trainer` of the torch backend."""

    name = "torch"
    passthrough_optimizers = True
    distributed_key = "torch_distributed"
    mixed_precision_key = "torch_amp"
    #: set by :meth:`init_distributed`: the gradients are summed over the workers
    distributed = False

    def __init__(self) -> None:
        self._amp_dtype: torch.dtype | None = None
        self._scaler: torch.amp.GradScaler | None = None

    def resolve_device(self, requested: str | None) -> str:
        """``None``: ``cuda:N`` (the current CUDA device) if CUDA is available, else ``cpu``; ``"gpu"`` and
        ``"cuda"``: the current CUDA device, an error without one; ``"cuda:N"``: that device."""
        if requested is None:
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        if requested == "cpu":
            return "cpu"
        if requested != "gpu" and not (isinstance(requested, str) and requested.split(":")[0] == "cuda"):
            raise ValueError(f"must be 'cpu', 'gpu', 'cuda' or 'cuda:N', got {requested!r}")
        if not torch.cuda.is_available():
            raise ValueError(f"{requested!r}: no CUDA GPU is available here (torch.cuda.is_available() is False, "
                             f"torch {torch.__version__}); use 'cpu' or leave device unset")  # fmt: skip
        try:
            index = torch.device("cuda" if requested == "gpu" else requested).index
        except RuntimeError:
            raise ValueError(f"must be 'cpu', 'gpu', 'cuda' or 'cuda:N', got {requested!r}") from None
        index = torch.cuda.current_device() if index is None else index
        if index >= torch.cuda.device_count():
            raise ValueError(f"{requested!r}: there are {torch.cuda.device_count()} CUDA devices")
        return f"cuda:{index}"

    @contextmanager
    def device_scope(self) -> Iterator[None]:
        with torch.device(self.device):
            yield

    def set_mixed_precision(self, dtype: str) -> None:
        """``torch.autocast`` with ``dtype`` around the step; for float16 a ``torch.amp.GradScaler`` (a step whose
        scaled gradient is not finite is skipped by the scaler, which then lowers the scale)."""
        if dtype not in ("bfloat16", "float16"):
            raise ValueError(f"must be 'bfloat16' or 'float16', got {dtype!r}")
        self._amp_dtype = getattr(torch, dtype)
        device_type = torch.device(self.device).type
        self._scaler = torch.amp.GradScaler(device_type) if dtype == "float16" else None

    def variables(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        return {k: torch.tensor(np.asarray(v, dtype=np.float32), requires_grad=True) for k, v in arrays.items()}

    def value_and_grad(self, fn: Callable[[dict[str, Any]], Any], variables: dict[str, Any]) -> tuple[Any, dict]:
        variables = {k: v if v.requires_grad else v.detach().requires_grad_(True) for k, v in variables.items()}
        value = fn(variables)
        keys = list(variables)
        grads = torch.autograd.grad(value, [variables[k] for k in keys], allow_unused=True)
        out = {k: g if g is not None else torch.zeros_like(variables[k]) for k, g in zip(keys, grads)}
        return value.detach(), out

    def to_numpy(self, x: Any) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    def assign(self, variable: Any, value: np.ndarray) -> None:
        with torch.no_grad():
            variable.copy_(torch.as_tensor(np.asarray(value), dtype=variable.dtype))

    @contextmanager
    def no_grad(self) -> Iterator[None]:
        with torch.no_grad():
            yield

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def limit_threads(self, num_params: int) -> None:
        """One thread for a model of fewer than :data:`SMALL_MODEL_PARAMS` parameters, unless ``OMP_NUM_THREADS`` is
        set: the ops of such models are too small to gain from threads, and on a CPU shared with other processes
        torch's threads wait for each other (RETURNN's 12AX demos: 0.3-0.5 s per epoch on one thread, 2-27 s on two
        at load average 2-3 on 2 cores)."""
        if num_params < SMALL_MODEL_PARAMS and not os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(1)

    def create_optimizer(self, params: list[Any], spec: OptimizerSpec, learning_rate: float) -> Any:
        cls = optimizer_class(spec.name)
        kwargs = {**torch_kwargs(spec), **spec.passthrough}
        try:
            return cls(params, lr=learning_rate, **kwargs)
        except TypeError as exc:
            raise ValueError(f"optimizer: torch.optim.{cls.__name__} does not take these options: {exc}") from None

    def set_learning_rate(self, optimizer: Any, learning_rate: float) -> None:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate

    def _inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """:return: the inputs on :attr:`device`; sequence lengths stay on the host, as RETURNN keeps them (the
        frontend moves them to the data's device where a kernel needs them)"""
        out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
        if self.device == "cpu":
            return out
        return {k: v if k.endswith(":seq_len") else v.to(self.device, non_blocking=True) for k, v in out.items()}

    def _autocast(self):
        return torch.autocast(torch.device(self.device).type, self._amp_dtype, enabled=self._amp_dtype is not None)

    def _outputs(self, outputs: dict[str, Any]) -> dict[str, np.ndarray]:
        return {k: self.to_numpy(v) for k, v in outputs.items()}

    def _reduce_grads(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        if self.distributed:
            flat = torch.cat([g.reshape(-1) for g in grads])
            torch.distributed.all_reduce(flat)
            grads = list(torch.split(flat, [g.numel() for g in grads]))
            grads = [g.view_as(p) for g, p in zip(grads, params)]
        for p, g in zip(params, grads):
            p.grad = g
        return grads

    def train_step(self, fn: Callable, inputs: dict[str, np.ndarray], params: list[Any], optimizer: Any,
                   options: StepOptions, compiled: bool) -> StepResult:  # fmt: skip
        for p in params:
            p.grad = None
        with self._autocast():
            total, outputs = fn(self._inputs(inputs))
        if not isinstance(total, torch.Tensor) or not total.requires_grad:
            raise ValueError("the total loss does not depend on any trainable parameter")
        (total if self._scaler is None else self._scaler.scale(total)).backward()
        if self._scaler is not None:
            self._scaler.unscale_(optimizer)
        grads = self._reduce_grads(params)
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=total.device)
        finite = torch.isfinite(total.detach())
        if self._scaler is None:  # with a scaler, a non-finite gradient only makes the scaler skip the step
            finite = finite & torch.isfinite(norm)
        if self.distributed:  # every worker takes the same decision: update only if all are finite
            flag = finite.to(torch.float32).reshape(1)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            finite = flag[0] > 0
        finite = bool(finite)
        if finite:
            if options.clip_value:
                torch.nn.utils.clip_grad_value_(params, options.clip_value)
            if options.clip_global_norm:
                torch.nn.utils.clip_grad_norm_(params, options.clip_global_norm)
            if self._scaler is None:
                optimizer.step()
            else:
                self._scaler.step(optimizer)
                self._scaler.update()
        return StepResult(self._outputs(outputs), finite, float(norm))

    def eval_step(self, fn: Callable, inputs: dict[str, np.ndarray], compiled: bool) -> StepResult:
        with torch.no_grad(), self._autocast():
            total, outputs = fn(self._inputs(inputs))
        finite = bool(np.isfinite(self.to_numpy(total)).all())
        return StepResult(self._outputs(outputs), finite)

    def optimizer_state(self, optimizer: Any, params: list[Any]) -> tuple[dict, dict[str, np.ndarray]]:
        state = optimizer.state_dict()
        arrays, meta_state = {}, {}
        for index, entries in state["state"].items():
            meta_state[str(index)] = {}
            for key, value in entries.items():
                if isinstance(value, torch.Tensor):
                    arrays[f"{index}/{key}"] = value.detach().cpu().numpy()
                    meta_state[str(index)][key] = "array"
                else:
                    meta_state[str(index)][key] = value
        return {"class": type(optimizer).__name__, "param_groups": state["param_groups"], "state": meta_state}, arrays

    def load_optimizer_state(self, optimizer: Any, params: list[Any], meta: dict, arrays: dict[str, Any]) -> None:
        if meta.get("class") != type(optimizer).__name__:
            raise ValueError(
                f"the checkpoint has a {meta.get('class')} optimizer, the config a {type(optimizer).__name__}"
            )
        state = {}
        for index, entries in meta["state"].items():
            state[int(index)] = {
                k: torch.from_numpy(np.array(arrays[f"{index}/{k}"])) if v == "array" else v for k, v in entries.items()
            }
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})

    def all_reduce_sum(self, raw: Any) -> Any:
        if not self.distributed:
            return raw
        out = raw.detach().clone() if isinstance(raw, torch.Tensor) else torch.tensor(raw, device=self.device)
        out = out.to(self.device)  # NCCL reduces CUDA tensors only
        torch.distributed.all_reduce(out)
        return out

    def init_distributed(self) -> tuple[int, int]:
        """Join the workers that ``torchrun`` started (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``PORT`` from the
        environment), unless the caller initialised a process group already: on CUDA with NCCL, each worker on the
        GPU ``LOCAL_RANK`` (the device becomes ``cuda:LOCAL_RANK``), on the CPU with gloo."""
        import torch.distributed as dist

        if self.device != "cpu":
            self.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device != "cpu" else "gloo")
        self.distributed = True
        return dist.get_rank(), dist.get_world_size()

    def finish_distributed(self) -> None:
        """Barrier, then destroy the process group. Without this, the gloo threads still alive at interpreter exit
        abort a worker now and then ("terminate called without an active exception", exit code -6) after training
        succeeded."""
        if self.distributed:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
            self.distributed = False

    def native_model(self, model: Any) -> NativeModel | None:
        return TorchModule(model) if isinstance(model, torch.nn.Module) else None
