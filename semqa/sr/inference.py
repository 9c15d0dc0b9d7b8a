"""Super-resolution inference: a trained generator applied to images of any size.

Weights travel as a safetensors state dict plus the architecture's JSON config
(:class:`semqa.sr.archs.GeneratorConfig`); loading rebuilds the network from ``semqa`` and
fills in tensors, so no pickled code is ever executed.

How the network runs is chosen per device (:func:`compute_plan`): channels-last tensors on
every device (oneDNN's and cuDNN's fastest convolution layout), bfloat16 (else float16)
autocast and larger window batches on CUDA, float32 on CPU. ``torch.compile`` is not used: on
CPU the channels-last eager network already runs at about the float32 GEMM rate of the same
process (``benchmarks/bench_performance.py``), and compiling takes longer than a lot's SR.

Large images are processed in overlapping windows of bounded size. Each window keeps only
pixels at least the generator's receptive radius away from its interior edges, so every kept
pixel saw exactly the context it sees in whole-image inference: the result equals
whole-image inference within :data:`TILING_ATOL` (float rounding of convolutions over
different window shapes) while memory stays bounded by the window size. A window or padding
too small for that is refused, never silently degraded.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from semqa.components import ARCH_FILE, WEIGHTS_FILE, load_network
from semqa.errors import InputError
from semqa.registry.model_uri import (  # noqa: F401 (tags re-exported)
    TAG_WEIGHTS_ARTIFACT,
    TAG_WEIGHTS_DIGEST,
    registered_files,
)
from semqa.registry.store import MODEL_NAME
from semqa.results import ModelRef
from semqa.sr.archs import GeneratorConfig, build_generator

#: The generator used when no model is named: the registry's production alias.
DEFAULT_MODEL_URI = f"models:/{MODEL_NAME}@production"
#: File names of a generator's weights and architecture (run artifacts and model extra files).
#: Largest difference between tiled and whole-image output (float32 on CPU, images in [0, 1]):
#: convolution sums regrouped for another window shape; below one grey level of 8-bit (1/255)
#: output and of the same order as one of 16-bit (1/65535).
TILING_ATOL = 1e-4


def _window_starts(n: int, window: int, pad: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Window starts along one axis and the output span (in input pixels) each one owns.

    Consecutive windows overlap by at least ``2 * pad``; the boundary between the spans two
    windows own lies in the middle of their overlap, so every kept pixel is at least ``pad``
    pixels away from an interior window edge.
    """
    if n <= window:
        return [0], [(0, n)]
    step = window - 2 * pad
    k = math.ceil((n - window) / step) + 1
    starts = [round(i * (n - window) / (k - 1)) for i in range(k)]
    bounds = [0] + [(starts[i + 1] + starts[i] + window) // 2 for i in range(k - 1)] + [n]
    return starts, list(zip(bounds[:-1], bounds[1:]))


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class ComputePlan:
    """How a generator runs on one device: tensor layout, reduced precision, windows per pass."""

    memory_format: torch.memory_format
    autocast_dtype: torch.dtype | None
    tile_batch: int


#: Largest difference allowed between a plan's output and float32 contiguous inference, on [0, 1]
#: images. Float32 channels-last only reorders sums (observed ≤ 2e-7). Bfloat16 keeps 8
#: significant bits (relative step 2⁻⁸ ≈ 4e-3 per operation; observed ≤ 1.4e-3 through CPU
#: autocast), float16 11 bits: both are allowed 1e-2, 2.5 grey levels of an 8-bit image.
PLAN_ATOL = {None: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


def compute_plan(device: torch.device, *, bf16_supported: bool | None = None) -> ComputePlan:
    """The :class:`ComputePlan` for ``device``.

    On CUDA: bfloat16 autocast where the GPU supports it (Ampere and later; same exponent
    range as float32, so no overflow in the residual sum), else float16, and 16 windows of
    256² per pass to fill the GPU (4 MiB of bfloat16 input, ~0.5 GiB of activations for the
    default generator). On CPU: float32 (CPUs without AMX run bfloat16 convolutions slower
    than float32) and 4 windows per pass, enough to keep two to eight cores busy while a
    pass's activations (32 channels × 256² × 4 windows × 4 B = 32 MiB) stay small.
    ``bf16_supported`` overrides the CUDA query (tests).
    """
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported() if bf16_supported is None else bf16_supported
        return ComputePlan(torch.channels_last, torch.bfloat16 if bf16 else torch.float16, tile_batch=16)
    return ComputePlan(torch.channels_last, None, tile_batch=4)


class Upscaler:
    """A generator in evaluation mode with tiled inference.

    Parameters
    ----------
    generator : torch.nn.Module
        The (EMA) generator; it is moved to ``device`` and put in eval mode.
    ref : semqa.results.ModelRef
        What the generator is (registry name, version, run, weights digest, scale).
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    tile_size : int
        Window side in input (LR) pixels; bounds memory. At least ``2 * tile_pad + 1``.
    tile_pad : int, optional
        Minimum context kept around each window's centre, in LR pixels; default and minimum
        the generator's receptive radius, which makes tiling exact (:data:`TILING_ATOL`).
    tile_batch : int, optional
        Windows per forward pass; default the device's :func:`compute_plan`.
    """

    def __init__(
        self,
        generator: nn.Module,
        ref: ModelRef,
        device: str | torch.device | None = None,
        *,
        tile_size: int = 256,
        tile_pad: int | None = None,
        tile_batch: int | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.plan = compute_plan(self.device)
        self.generator = generator.to(self.device, memory_format=self.plan.memory_format).eval()
        self.ref = ref
        self.scale = int(ref.scale)
        radius = int(getattr(generator, "receptive_radius", 16))
        self.tile_pad = radius if tile_pad is None else int(tile_pad)
        if self.tile_pad < radius:
            raise InputError(
                f"tile padding {self.tile_pad} px is below the generator's receptive radius of {radius} LR px: tiles would show seams"
            )
        if int(tile_size) < 2 * self.tile_pad + 1:
            # Each window must keep at least one pixel that is tile_pad away from both its edges.
            raise InputError(
                f"tile size must be at least {2 * self.tile_pad + 1} LR px for this generator "
                f"(twice the tile padding of {self.tile_pad} px, its receptive radius being {radius} px, plus one), got {tile_size}"
            )
        self.tile_size = int(tile_size)
        self.tile_batch = max(1, int(tile_batch)) if tile_batch is not None else self.plan.tile_batch

    @classmethod
    def from_files(
        cls,
        weights: str | Path,
        arch_config: str | Path,
        *,
        ref: ModelRef | None = None,
        device: str | torch.device | None = None,
        **tiling,
    ) -> Upscaler:
        """Load from a safetensors state dict and the architecture JSON (no MLflow needed).

        ``ref`` defaults to a :class:`ModelRef` naming only the registered model name, the
        scale and the weights' digest.
        """
        generator, config, digest = load_network(weights, arch_config, GeneratorConfig, build_generator, "generator")
        weights = Path(weights)
        if ref is None:
            ref = ModelRef(name=MODEL_NAME, scale=config.scale, weights_digest=digest, model_uri=str(weights.parent))
        elif ref.weights_digest is not None and ref.weights_digest != digest:
            raise InputError(f"weights digest {digest} differs from the registered {ref.weights_digest}")
        return cls(generator, ref.model_copy(update={"weights_digest": digest, "scale": config.scale}), device, **tiling)

    def _autocast(self):
        if self.plan.autocast_dtype is not None:
            return torch.autocast(self.device.type, dtype=self.plan.autocast_dtype)
        return nullcontext()

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch[:, None])).to(self.device, memory_format=self.plan.memory_format)
        with torch.inference_mode(), self._autocast():
            y = self.generator(x)
        return y[:, 0].float().cpu().numpy()

    def _upscale_stack(self, stack: np.ndarray) -> np.ndarray:
        """Upscale ``(N, H, W)`` float32 images window by window."""
        n, h, w = stack.shape
        s = self.scale
        out = np.empty((n, h * s, w * s), dtype=np.float32)
        ys, yspans = _window_starts(h, self.tile_size, self.tile_pad)
        xs, xspans = _window_starts(w, self.tile_size, self.tile_pad)
        wh, ww = min(h, self.tile_size), min(w, self.tile_size)
        jobs = [(i, y, yspan, x, xspan) for i in range(n) for y, yspan in zip(ys, yspans) for x, xspan in zip(xs, xspans)]
        for k in range(0, len(jobs), self.tile_batch):
            chunk = jobs[k : k + self.tile_batch]
            result = self._forward(np.stack([stack[i, y : y + wh, x : x + ww] for i, y, _, x, _ in chunk]))
            for tile, (i, y, (y0, y1), x, (x0, x1)) in zip(result, chunk):
                out[i, y0 * s : y1 * s, x0 * s : x1 * s] = tile[(y0 - y) * s : (y1 - y) * s, (x0 - x) * s : (x1 - x) * s]
        return np.clip(out, 0.0, 1.0, out=out)

    @staticmethod
    def _check(image: np.ndarray) -> np.ndarray:
        arr = np.asarray(image)
        if arr.ndim != 2 or arr.size == 0:
            raise InputError(f"super-resolution needs a non-empty 2-D grayscale image, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise InputError(f"super-resolution needs a float image in [0, 1], got {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise InputError("image contains NaN or infinite values")
        return arr.astype(np.float32, copy=False)

    def upscale(self, image: np.ndarray) -> np.ndarray:
        """Super-resolve one 2-D float image in [0, 1]; returns ``float32`` of shape × ``scale``."""
        return self._upscale_stack(self._check(image)[None])[0]

    def upscale_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Super-resolve several images of the same shape together."""
        arrays = [self._check(im) for im in images]
        if not arrays:
            return []
        if len({a.shape for a in arrays}) != 1:
            raise InputError("upscale_batch needs images of one shape; call upscale() for mixed sizes")
        return list(self._upscale_stack(np.stack(arrays)))


def load_upscaler(model_uri: str | None = None, device: str | torch.device | None = None, **tiling) -> Upscaler:
    """The generator named by ``model_uri``, ready for inference.

    Parameters
    ----------
    model_uri : str, optional
        ``models:/<name>@<alias>``, ``models:/<name>/<version>``, or a local folder holding
        ``weights.safetensors`` and ``arch_config.json``. Default: ``SEMQA_MODEL_URI`` or
        ``models:/semqa-generator@production``.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    **tiling
        ``tile_size``, ``tile_pad``, ``tile_batch`` for :class:`Upscaler`.

    Raises
    ------
    InputError
        Unknown model, version or alias, or weights whose digest differs from the registry's.
    """
    uri = model_uri or os.environ.get("SEMQA_MODEL_URI") or DEFAULT_MODEL_URI
    if not uri.startswith("models:/"):
        folder = Path(uri)
        if not folder.is_dir():
            raise InputError(f"model {uri!r} is neither a models:/ URI nor a folder with {WEIGHTS_FILE}")
        return Upscaler.from_files(folder / WEIGHTS_FILE, folder / ARCH_FILE, device=device, **tiling)

    hint = "run `semqa train` and promote one"
    with registered_files(uri, what="model", no_production_hint=hint) as found:
        ref = ModelRef(
            name=found.name,
            version=found.version,
            alias=found.alias,
            run_id=found.run_id,
            model_uri=uri,
            weights_digest=found.weights_digest,
            scale=json.loads((found.folder / ARCH_FILE).read_text())["scale"],
        )
        return Upscaler.from_files(found.folder / WEIGHTS_FILE, found.folder / ARCH_FILE, ref=ref, device=device, **tiling)
