"""Device compute plans of SR inference: selection per device, and results within tolerance."""

import dataclasses

import numpy as np
import pytest
import torch

from semqa.results import ModelRef
from semqa.sr.archs import GeneratorConfig, build_generator
from semqa.sr.inference import PLAN_ATOL, Upscaler, compute_plan


def _generator() -> torch.nn.Module:
    torch.manual_seed(5)
    g = build_generator(GeneratorConfig(arch="srvgg", scale=4, num_feat=8, num_conv=3))
    with torch.no_grad():  # move the output away from the upsampled input
        for p in g.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return g


def _reference(g: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """Float32, contiguous (NCHW), whole-image inference on a copy of ``g``."""
    ref = build_generator(GeneratorConfig(arch="srvgg", scale=4, num_feat=8, num_conv=3))
    ref.load_state_dict({k: v.contiguous() for k, v in g.state_dict().items()})
    with torch.no_grad():
        return ref.eval()(torch.from_numpy(image)[None, None])[0, 0].clamp(0, 1).numpy()


def test_plan_selection_per_device() -> None:
    cpu = compute_plan(torch.device("cpu"))
    assert (cpu.memory_format, cpu.autocast_dtype, cpu.tile_batch) == (torch.channels_last, None, 4)
    # The CUDA choices, decided without a GPU: bfloat16 where supported, else float16.
    bf16 = compute_plan(torch.device("cuda"), bf16_supported=True)
    fp16 = compute_plan(torch.device("cuda:0"), bf16_supported=False)
    assert bf16.autocast_dtype is torch.bfloat16 and fp16.autocast_dtype is torch.float16
    assert bf16.memory_format is torch.channels_last and bf16.tile_batch > cpu.tile_batch


def test_upscaler_uses_its_device_plan() -> None:
    up = Upscaler(_generator(), ModelRef(name="t", scale=4), "cpu")
    assert up.plan == compute_plan(torch.device("cpu"))
    assert up.tile_batch == up.plan.tile_batch
    assert Upscaler(_generator(), ModelRef(name="t", scale=4), "cpu", tile_batch=2).tile_batch == 2
    weight = next(m.weight for m in up.generator.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert weight.is_contiguous(memory_format=torch.channels_last)


def test_cpu_plan_matches_float32_contiguous_within_tolerance() -> None:
    g = _generator()
    image = np.random.default_rng(0).uniform(0.2, 0.8, (70, 90)).astype(np.float32)
    up = Upscaler(g, ModelRef(name="t", scale=4), "cpu", tile_size=40)
    assert np.abs(up.upscale(image) - _reference(g, image)).max() <= PLAN_ATOL[None]


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_reduced_precision_path_within_its_tolerance(dtype: torch.dtype) -> None:
    """The autocast path the CUDA plan selects, run on CPU (which autocasts bfloat16 too)."""
    g = _generator()
    image = np.random.default_rng(1).uniform(0.2, 0.8, (48, 56)).astype(np.float32)
    up = Upscaler(g, ModelRef(name="t", scale=4), "cpu", tile_size=32)
    up.plan = dataclasses.replace(up.plan, autocast_dtype=dtype)
    out = up.upscale(image)
    assert out.dtype == np.float32
    assert np.abs(out - _reference(g, image)).max() <= PLAN_ATOL[dtype]
