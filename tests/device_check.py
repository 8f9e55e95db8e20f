"""Run code with the model on another device than the one new tensors default to.

On a CUDA machine (``SUBLAYER_LAB_TEST_DEVICE=cuda``) the model goes to the GPU and PyTorch's own
errors catch a host tensor meeting it. On a CPU-only machine the two devices are simulated: every
tensor made without an explicit ``device`` (``torch.zeros(n)``, ``torch.tensor(ids)``, ``.cpu()``) or
computed only from such tensors counts as a *host* tensor; ``.to(device)`` moves it to the model's
side; and a torch call that mixes host tensors with the model's raises ``DeviceMismatch``, as CUDA
would. 0-dim host tensors may meet the model's, as CPU scalars may meet CUDA tensors. Not seen on the
CPU: a parameter of a module built from host tensors and never moved (only CUDA catches that).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

DEVICE_ENV = "SUBLAYER_LAB_TEST_DEVICE"
FACTORIES = {
    torch.tensor, torch.as_tensor, torch.zeros, torch.ones, torch.empty, torch.full, torch.arange,
    torch.linspace, torch.eye, torch.rand, torch.randn, torch.randint, torch.randperm, torch.from_numpy,
}  # fmt: skip
MOVES = {"to", "cuda"}
INDEXING = {"__getitem__", "__setitem__"}


class DeviceMismatch(AssertionError):
    """A torch call received host tensors and model-device tensors together."""


def _tensors(tree) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _moves_device(args, kwargs) -> bool:
    """Whether a ``.to(...)`` call names a device (a device, a device string or another tensor)."""
    targets = [*args[1:], kwargs.get("device"), kwargs.get("other")]
    return any(isinstance(t, torch.device | str | torch.Tensor) for t in targets)


class HostTracker(TorchFunctionMode):
    """Tags host tensors and refuses calls that mix them with the model's (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.host: dict[
            int, weakref.ref
        ] = {}  # id -> the tensor (ids of dead tensors may be reused)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if func in FACTORIES:
            return self._tag(func(*args, **kwargs), kwargs.get("device") is None)
        if name in MOVES and (name == "cuda" or _moves_device(args, kwargs)):
            return (
                func(*args, **{**kwargs, "copy": True}) if name == "to" else func(*args, **kwargs)
            )
        if name == "cpu":
            return self._tag(func(*args, **kwargs), True)
        if name in INDEXING:  # indices and assigned values may come from the host, as with CUDA
            return self._tag(func(*args, **kwargs), self._is_host(args[0]))
        inputs = [t for t in _tensors((args, kwargs)) if t.dim() > 0]
        on_host = [self._is_host(t) for t in inputs]
        if any(on_host) and not all(on_host):
            raise DeviceMismatch(
                f"{getattr(func, '__qualname__', name)} mixes tensors made on the default device with the model's"
            )
        return self._tag(func(*args, **kwargs), bool(inputs) and all(on_host))

    def _is_host(self, tensor: torch.Tensor) -> bool:
        ref = self.host.get(id(tensor))
        return ref is not None and ref() is tensor

    def _tag(self, result, host: bool):
        if host:
            for t in _tensors(result):
                self.host[id(t)] = weakref.ref(t)
        return result


def model_device() -> str:
    """The device the model runs on in these tests: ``$SUBLAYER_LAB_TEST_DEVICE`` or the CPU."""
    return os.environ.get(DEVICE_ENV, "cpu")


@contextmanager
def elsewhere() -> Iterator[str]:
    """Inside: tensors made without a device are not on the model's device; yields the model's device."""
    device = model_device()
    if device != "cpu":
        yield device  # a real accelerator: PyTorch itself refuses mixed devices
        return
    with HostTracker():
        yield device
