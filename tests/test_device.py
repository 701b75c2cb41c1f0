"""Device selection and per-device settings (availability injected, so no GPU needed)."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

from pipeline.core.errors import InputError
from pipeline.models.device import DeviceSettings, select_device


@pytest.mark.parametrize(
    "cuda,mps,expected",
    [
        (True, True, "cuda"),
        (True, False, "cuda"),
        (False, True, "mps"),
        (False, False, "cpu"),
    ],
)
def test_auto_prefers_cuda_then_mps_then_cpu(cuda, mps, expected):
    assert select_device("auto", cuda_available=cuda, mps_available=mps).type == expected


@pytest.mark.parametrize("req", ["cpu", "CPU", " cpu "])
def test_cpu_always_available(req):
    assert select_device(req, cuda_available=True, mps_available=True) == torch.device("cpu")


def test_explicit_devices_when_available():
    assert select_device("cuda", cuda_available=True, mps_available=False) == torch.device("cuda")
    assert select_device("cuda:1", cuda_available=True, mps_available=False) == torch.device("cuda:1")
    assert select_device("mps", cuda_available=False, mps_available=True) == torch.device("mps")
    assert select_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("req,word", [("cuda", "CUDA"), ("cuda:0", "CUDA"), ("mps", "MPS")])
def test_unavailable_device_is_a_one_line_input_error(req, word):
    with pytest.raises(InputError) as e:
        select_device(req, cuda_available=False, mps_available=False)
    msg = str(e.value)
    assert word in msg and "\n" not in msg and req in msg


@pytest.mark.parametrize("req", ["gpu", "cuda:x", "tpu"])
def test_unknown_device_rejected(req):
    with pytest.raises(InputError, match="not a device"):
        select_device(req, cuda_available=True, mps_available=True)


def test_default_queries_torch():
    dev = select_device("auto")
    assert dev.type == ("cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu")


def test_settings_cuda_turns_everything_on():
    s = DeviceSettings.for_device(torch.device("cuda"))
    assert (s.amp, s.pin_memory, s.non_blocking, s.channels_last) == (True, True, True, True)
    assert s.amp_dtype == torch.float16
    assert s.memory_format == torch.channels_last
    assert s.describe()["amp_dtype"] == "float16"


@pytest.mark.parametrize("dev", ["cpu", "mps"])
def test_settings_off_outside_cuda(dev):
    s = DeviceSettings.for_device(dev)
    assert (s.amp, s.pin_memory, s.non_blocking, s.channels_last) == (False, False, False, False)
    assert s.memory_format == torch.contiguous_format
    assert isinstance(s.autocast(), contextlib.nullcontext)
    assert s.grad_scaler() is None


def test_cpu_override_exercises_cuda_code_paths():
    """channels-last copies, autocast and the scaler work on the CPU when forced on."""
    s = dataclasses.replace(DeviceSettings.for_device("cpu"), amp=True, amp_dtype=torch.bfloat16, channels_last=True)
    x = s.to_device(torch.randn(2, 3, 5, 5), image=True)
    assert x.is_contiguous(memory_format=torch.channels_last)
    net = s.prepare_model(torch.nn.Conv2d(3, 4, 3))
    assert net.weight.is_contiguous(memory_format=torch.channels_last)
    with s.autocast():
        y = net(x)
    assert y.dtype == torch.bfloat16
    assert s.grad_scaler() is None  # bfloat16 needs no scaling
    s16 = dataclasses.replace(s, amp_dtype=torch.float16)
    assert isinstance(s16.grad_scaler(), torch.amp.GradScaler)
