"""Learned instance segmentation: a U-Net's three maps decoded by marker watershed.

The network (:mod:`semqa.particles.archs`) sees the image resampled so the typical particle
(:func:`semqa.particles.segmentation.estimate_particle_diameter`, read from a first look
that finds dark or bright particles on an unevenly lit substrate, :mod:`semqa.particles.look`) lies within the model's
working range, ``working_diameter_px`` to ``working_diameter_max_px`` (:func:`working_factor`):
an image inside the range is used as it is, so one model serves any pixel size and
magnification without blowing small-particle frames up (the network's cost grows with the
pixels it sees). Its maps are resampled back and decoded at the image's own resolution (Beucher & Meyer 1993 marker watershed, as StarDist/Cellpose-era
U-Net pipelines do: e.g. Rühle et al., *Sci. Rep.* 11, 2021):

* foreground: probability > 0.5 (the Bayes decision for a calibrated probability);
* markers: connected parts where the normalised distance to the edge exceeds 0.5 and the
  boundary probability is below 0.5. For a convex particle the part deeper than half its
  inscribed radius is one blob, and two touching convex particles' such parts are separated
  by the neck between them, whatever their size: the rule is geometric, not tuned;
* watershed of the negated distance map from those markers within the foreground.

Weights travel as safetensors plus the architecture JSON, as the generator's do
(:mod:`semqa.sr.inference`); loading never unpickles. For inference each batch-norm is folded
into the convolution before it and the tensors are kept channels-last (the layout oneDNN's
CPU convolutions run fastest on); the arithmetic is the same up to float rounding.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from skimage.segmentation import watershed
from skimage.transform import resize
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from semqa.components import ARCH_FILE, WEIGHTS_FILE, load_network
from semqa.errors import InputError
from semqa.particles.archs import (
    BOUNDARY,
    DISTANCE,
    FOREGROUND,
    SegmenterConfig,
    build_segmenter,
)
from semqa.particles.segmentation import estimate_particle_diameter
from semqa.registry.model_uri import registered_files
from semqa.registry.store import SEGMENTER_MODEL_NAME
from semqa.results import SegmenterRef
from semqa.sr.inference import default_device

#: ``--segmenter learned`` means the registry's production segmenter.
LEARNED_URI = f"models:/{SEGMENTER_MODEL_NAME}@production"
#: The segmenter shipped with semqa (weights, architecture, and ``provenance.json``: the
#: command, seed, config, data digest and code commit that re-create it); ``--segmenter`` takes this folder.
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
#: Resampling factors outside this range would blow an image up or shrink it to nothing;
#: the estimate is clamped into it (particles 4–240 px across at a 24 px working size).
MIN_FACTOR, MAX_FACTOR = 0.1, 6.0


def normalise(image: np.ndarray) -> np.ndarray:
    """Intensities mapped so the 1st percentile is 0 and the 99th is 1 (contrast- and dose-free)."""
    lo, hi = np.percentile(image, (1, 99))
    return ((image - lo) / max(float(hi - lo), 1e-6)).astype(np.float32)


def working_factor(diameter_px: float, config: SegmenterConfig) -> float:
    """Resampling factor that brings a typical particle ECD of ``diameter_px`` into the working range.

    1 inside ``config.working_range()``; else the factor to its nearer end, clamped to
    [``MIN_FACTOR``, ``MAX_FACTOR``]. Training resamples its images by the same rule.
    """
    lo, hi = config.working_range()
    return float(np.clip(np.clip(diameter_px, lo, hi) / diameter_px, MIN_FACTOR, MAX_FACTOR))


def working_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    """The image shape at working scale (at least 8 × 8)."""
    return max(8, round(shape[0] * factor)), max(8, round(shape[1] * factor))


def inference_network(net: nn.Module) -> nn.Module:
    """A copy of ``net`` for inference: each Conv2d + BatchNorm2d pair folded into one convolution, channels-last."""
    fused = copy.deepcopy(net).eval()
    for seq in fused.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        mods = list(seq)
        for i in range(len(mods) - 1):
            if isinstance(mods[i], nn.Conv2d) and isinstance(mods[i + 1], nn.BatchNorm2d):
                seq[i], seq[i + 1] = fuse_conv_bn_eval(mods[i], mods[i + 1]), nn.Identity()
    return fused.to(memory_format=torch.channels_last)


def decode(foreground: np.ndarray, boundary: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Instance labels from the three maps (module docstring: the decoding rule)."""
    mask = foreground > 0.5
    markers, n = ndimage.label(mask & (distance > 0.5) & (boundary < 0.5))
    if n == 0:
        return np.zeros(foreground.shape, dtype=np.int32)
    labels = watershed(-distance, markers, mask=mask)
    return labels.astype(np.int32, copy=False)


class LearnedSegmenter:
    """A trained U-Net in evaluation mode, with resampling and decoding.

    Parameters
    ----------
    net : torch.nn.Module
        The network (moved to ``device``, eval mode).
    config : SegmenterConfig
    ref : SegmenterRef
        What it is (registry name, version, run, weights digest), for lineage.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    """

    def __init__(self, net: nn.Module, config: SegmenterConfig, ref: SegmenterRef, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.net = net.to(self.device).eval()
        self._infer = inference_network(self.net)
        self.config = config
        self.ref = ref

    @classmethod
    def from_files(cls, weights: str | Path, arch_config: str | Path, *, ref: SegmenterRef | None = None, device=None) -> LearnedSegmenter:
        """Load from safetensors weights and the architecture JSON (no MLflow needed)."""
        net, config, digest = load_network(weights, arch_config, SegmenterConfig, build_segmenter, "segmenter")
        weights = Path(weights)
        if ref is None:
            ref = SegmenterRef(kind="learned", name=SEGMENTER_MODEL_NAME, model_uri=str(weights.parent))
        elif ref.weights_digest is not None and ref.weights_digest != digest:
            raise InputError(f"segmenter weights digest {digest} differs from the registered {ref.weights_digest}")
        return cls(net, config, ref.model_copy(update={"weights_digest": digest}), device)

    def predict(self, image: np.ndarray, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        """The network's maps ``(3, H, W)`` of an image at working scale (sigmoid applied to 0 and 1).

        ``out_shape``: resample the maps bilinearly to this shape (the original image's).
        """
        m = self.net.multiple
        h, w = image.shape
        padded = np.pad(normalise(image), ((0, -h % m), (0, -w % m)), mode="reflect")
        x = torch.from_numpy(padded[None, None]).to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = self._infer(x)[:, :, :h, :w].float().contiguous()
            if out_shape is not None and tuple(out_shape) != (h, w):
                y = torch.nn.functional.interpolate(y, size=tuple(out_shape), mode="bilinear", align_corners=False)
            y = y[0]
            probs = torch.sigmoid(y[[FOREGROUND, BOUNDARY]])
            return torch.cat([probs, y[[DISTANCE]]]).cpu().numpy()

    def segment(self, image: np.ndarray, particle_diameter_px: float | None = None) -> np.ndarray:
        """Label the particles of a 2-D grayscale image; ``int32``, 0 = background.

        ``particle_diameter_px`` (typical ECD) is estimated from the image when not given;
        an image without foreground gives all zeros.
        """
        arr = np.asarray(image)
        if arr.ndim != 2 or min(arr.shape) < 3:
            raise InputError(f"segment needs a 2-D grayscale image of at least 3 × 3 pixels, got shape {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) or arr.dtype == bool:
            raise InputError(f"segment needs a real-valued image, got dtype {arr.dtype}")
        arr = arr.astype(np.float32, copy=False)
        if not np.isfinite(arr).all():
            raise InputError("image holds NaN or infinite values")
        diameter = particle_diameter_px or estimate_particle_diameter(arr)
        if diameter is None:
            return np.zeros(arr.shape, dtype=np.int32)
        factor = working_factor(diameter, self.config)
        shape = working_shape(arr.shape, factor)
        work = arr if shape == arr.shape else resize(arr, shape, order=1, anti_aliasing=factor < 1, preserve_range=True).astype(np.float32)
        maps = self.predict(work, arr.shape)
        return decode(maps[FOREGROUND], maps[BOUNDARY], maps[DISTANCE])


def load_segmenter(uri: str, device: str | torch.device | None = None) -> LearnedSegmenter:
    """The segmenter named by ``uri``: ``learned`` (the production version), a models:/ URI or a folder.

    Raises
    ------
    InputError
        Unknown model, version or alias; a folder without the files; a digest mismatch.
    """
    uri = LEARNED_URI if uri == "learned" else uri
    if not uri.startswith("models:/"):
        folder = Path(uri)
        if not folder.is_dir():
            raise InputError(f"segmenter {uri!r} is neither classic, learned, a models:/ URI nor a folder with {WEIGHTS_FILE}")
        return LearnedSegmenter.from_files(folder / WEIGHTS_FILE, folder / ARCH_FILE, device=device)

    hint = "run `semqa segmenter train` and promote one"
    with registered_files(uri, what="segmenter", kind="segmenter", no_production_hint=hint) as found:
        ref = SegmenterRef(
            kind="learned", name=found.name, version=found.version, alias=found.alias, run_id=found.run_id,
            model_uri=uri, weights_digest=found.weights_digest,
        )
        return LearnedSegmenter.from_files(found.folder / WEIGHTS_FILE, found.folder / ARCH_FILE, ref=ref, device=device)
