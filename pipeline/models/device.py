"""Compute device selection and the per-device settings of the deep models.

``select_device("auto")`` picks CUDA when present, then Apple MPS, then the
CPU; an explicit ``cuda``/``mps`` that is not available is an
:class:`~pipeline.core.errors.InputError`. :class:`DeviceSettings` holds what
changes with the device: mixed precision, pinned host memory and non-blocking
copies, and the channels-last memory format, all of which are only switched on
for CUDA. Availability can be injected (``cuda_available=``,
``mps_available=``) so that the decision logic is testable on any machine.
Nothing here changes global torch state.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from pipeline.core.errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def cuda_is_available() -> bool:
    return bool(torch.cuda.is_available())


def mps_is_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(
    requested: str | torch.device = "auto", *, cuda_available: bool | None = None, mps_available: bool | None = None
) -> torch.device:
    """Resolve ``auto``/``cpu``/``cuda``/``cuda:N``/``mps`` to a :class:`torch.device`.

    ``auto``: CUDA if available, else MPS if available, else the CPU. Asking for an
    unavailable device raises :class:`InputError` with a one-line message.
    """
    if isinstance(requested, torch.device):
        requested = str(requested)
    req = (requested or "auto").strip().lower()
    cuda_ok = cuda_is_available() if cuda_available is None else bool(cuda_available)
    mps_ok = mps_is_available() if mps_available is None else bool(mps_available)
    if req == "auto":
        if cuda_ok:
            return torch.device("cuda")
        if mps_ok:
            return torch.device("mps")
        return torch.device("cpu")
    if req == "cpu":
        return torch.device("cpu")
    if req == "cuda" or req.startswith("cuda:"):
        if req != "cuda" and not req[5:].isdigit():
            raise InputError(f"device: {requested!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
        if not cuda_ok:
            raise InputError(
                f"device: {requested!r} requested but CUDA is not available on this machine; use --device auto or cpu"
            )
        return torch.device(req)
    if req == "mps":
        if not mps_ok:
            raise InputError(
                "device: 'mps' requested but Apple MPS is not available on this machine; use --device auto or cpu"
            )
        return torch.device("mps")
    raise InputError(f"device: {requested!r} is not a device; use {', '.join(DEVICE_CHOICES)} or cuda:N")


@dataclass(frozen=True)
class DeviceSettings:
    """How tensors and models are placed for one device.

    Use :meth:`for_device` for the defaults (everything on for CUDA, off otherwise);
    the fields can be overridden (``dataclasses.replace``) to exercise a path on the CPU,
    e.g. channels-last plus bfloat16 autocast.
    """

    device: torch.device
    amp: bool = False  # mixed precision autocast in training
    amp_dtype: torch.dtype = torch.float16
    pin_memory: bool = False  # page-locked host batches (DataLoader pin_memory)
    non_blocking: bool = False  # asynchronous host -> device copies
    channels_last: bool = False  # NHWC memory format for convolutions
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_device(cls, device: torch.device | str) -> DeviceSettings:
        dev = torch.device(device)
        cuda = dev.type == "cuda"
        return cls(
            device=dev, amp=cuda, amp_dtype=torch.float16, pin_memory=cuda, non_blocking=cuda, channels_last=cuda
        )

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def to_device(self, t: torch.Tensor, image: bool = False) -> torch.Tensor:
        """Copy a host tensor to the device (non-blocking when set); ``image`` applies the memory format."""
        out = t.to(self.device, non_blocking=self.non_blocking)
        if image and self.channels_last and out.dim() == 4:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def prepare_model(self, net: torch.nn.Module) -> torch.nn.Module:
        net = net.to(self.device)
        if self.channels_last:
            # Module.to documents to(memory_format=...); torch's overload stubs leave that form out.
            net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return net

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for the forward pass in training (a no-op when ``amp`` is off)."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A gradient scaler when autocasting to float16 (bfloat16 needs none), else None."""
        if self.amp and self.amp_dtype == torch.float16:
            return torch.amp.GradScaler(self.device.type)
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "device": str(self.device),
            "amp": self.amp,
            "amp_dtype": str(self.amp_dtype).removeprefix("torch."),
            "pin_memory": self.pin_memory,
            "non_blocking": self.non_blocking,
            "channels_last": self.channels_last,
        }
