"""The classic detection's output, frozen before the speed work of issue 15.

Speed work must not change results: ``tests/data/detection_frozen.npz`` holds small frames of
several families (SE scenes of :mod:`semqa.synth.scenes` at their HR dose, a high-dose and an
LR one; :mod:`semqa.synth.families` dome, bse and dark, a low-dose dome; an agglomerate scene of
:mod:`semqa.synth.agglomerates`), stored as 16-bit codes (so the test does not depend on the
synthesis code), with the labels, particle ECDs and noise models the detection gave them when
they were frozen. Regenerate only for a deliberate change of results:
``PYTHONPATH=. python tests/test_detection_frozen.py``.
"""

from pathlib import Path

import numpy as np
import pytest

from semqa.particles.detection import _into_blocks, _subsample_blocks
from semqa.particles.measure import measure_particles
from semqa.particles.noise import _equal_count_bins
from semqa.particles.segmentation import detect

DATA = Path(__file__).parent / "data" / "detection_frozen.npz"
NOISE_FIELDS = ("gain", "read_variance", "stabilized_sd", "sum_inflation")


def _frames() -> dict[str, np.ndarray]:
    """The frames, from fixed seeds, as 16-bit codes (images are ``codes / 65535``)."""
    from semqa.synth.agglomerates import (
        AgglomerateConfig,
        render_agglomerates,
        scan_agglomerates,
    )
    from semqa.synth.families import FamilyConfig, render_family, scan_family
    from semqa.synth.scenes import SynthConfig, render_pair

    frames = {}
    hr, lr, _ = render_pair(SynthConfig(size_px=256), np.random.default_rng(1))
    frames["scene_hr"], frames["scene_lr"] = hr, lr
    frames["scene_high_dose"], _, _ = render_pair(SynthConfig(size_px=256, hr_dose=5000.0), np.random.default_rng(2))
    for i, family in enumerate(("dome", "bse", "dark")):
        config = FamilyConfig(family=family, size_px=256, d50_px=14, dose=60.0)
        rng = np.random.default_rng(10 + i)
        frames[f"family_{family}"], _ = scan_family(render_family(config, rng), config, rng)
    config = FamilyConfig(family="dome", size_px=256, d50_px=16, dose=8.0)
    rng = np.random.default_rng(20)
    frames["family_dome_low_dose"], _ = scan_family(render_family(config, rng), config, rng)
    config = AgglomerateConfig(size_px=256, d50_px=12)
    rng = np.random.default_rng(30)
    frames["agglomerates"] = scan_agglomerates(render_agglomerates(config, rng), config, rng)
    return {k: np.round(np.clip(v, 0, 1) * 65535).astype(np.uint16) for k, v in frames.items()}


def _outputs(image: np.ndarray) -> dict[str, np.ndarray]:
    det = detect(image)
    particles, _ = measure_particles(det.labels, 1.0)
    return {
        "labels": det.labels.astype(np.int32),
        "ecd": np.array([p.ecd_um for p in particles]),
        "noise": np.array([getattr(det.noise, f) for f in NOISE_FIELDS]) if det.noise else np.zeros(4),
        "polarity": np.array(det.polarity),
    }


def _frozen() -> dict[str, dict[str, np.ndarray]]:
    with np.load(DATA) as data:
        names = sorted({k.split("/")[0] for k in data.files})
        return {n: {k.split("/")[1]: data[k] for k in data.files if k.startswith(n + "/")} for n in names}


FROZEN = _frozen() if DATA.exists() else {}


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_detection_output_is_unchanged(name: str) -> None:
    frozen = FROZEN[name]
    out = _outputs(frozen["codes"].astype(np.float32) / np.float32(65535))
    assert int(out["polarity"]) == int(frozen["polarity"])
    # The noise model may move at float32 rounding level (1e-5 relative), never more.
    np.testing.assert_allclose(out["noise"], frozen["noise"], rtol=1e-5)
    # Same particles, pixel for pixel, with the same labels.
    assert out["labels"].max() == frozen["labels"].max()
    np.testing.assert_array_equal(out["labels"], frozen["labels"])
    np.testing.assert_allclose(out["ecd"], frozen["ecd"], rtol=1e-12)


def test_frozen_frames_hold_particles() -> None:
    """The reference is not vacuous: every frame has particles and both polarities occur."""
    assert len(FROZEN) == 8
    assert all(f["labels"].max() >= 5 for f in FROZEN.values())
    assert {int(f["polarity"]) for f in FROZEN.values()} == {1, -1}


def _expanded(small: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """The full-size nearest-neighbour expansion the detection used before issue 15 (reference)."""
    big = np.repeat(np.repeat(small, f, axis=0), f, axis=1)
    return np.pad(big, ((0, shape[0] - big.shape[0]), (0, shape[1] - big.shape[1])), mode="edge")


@pytest.mark.parametrize("shape, f", [((64, 64), 4), ((67, 45), 2), ((70, 83), 8), ((33, 16), 16)])
def test_blockwise_combination_equals_expansion(shape: tuple[int, int], f: int) -> None:
    rng = np.random.default_rng(f)
    small = rng.normal(size=(shape[0] // f, shape[1] // f)).astype(np.float32)
    full = rng.normal(size=shape).astype(np.float32)
    expected = np.maximum(full, _expanded(small, f, shape))
    _into_blocks(np.maximum, full, small, f)
    np.testing.assert_array_equal(full, expected)
    bits = rng.integers(0, 8, size=shape).astype(np.uint16)
    small_bits = rng.integers(0, 64, size=small.shape).astype(np.uint16)
    expected_bits = bits | _expanded(small_bits, f, shape)
    _into_blocks(np.bitwise_or, bits, small_bits, f)
    np.testing.assert_array_equal(bits, expected_bits)
    np.testing.assert_array_equal(_subsample_blocks(small, f, shape, 4), _expanded(small, f, shape)[::4, ::4])


@pytest.mark.parametrize("n, levels", [(300, 7), (4097, 7), (20000, 3), (5000, 100000), (17, 2)])
def test_equal_count_bins_equal_a_stable_sort(n: int, levels: int) -> None:
    """The noise fit's bins (many ties, as in 8-bit frames) are those of a stable argsort."""
    rng = np.random.default_rng(n)
    key = (rng.integers(0, levels, n) / levels).astype(np.float32)
    values = rng.normal(size=n).astype(np.float32)
    medians, groups = _equal_count_bins(key, values)
    for chunk, median, group in zip(np.array_split(np.argsort(key, kind="stable"), 16), medians, groups):
        np.testing.assert_array_equal(np.sort(values[chunk]), np.sort(group))
        if chunk.size:
            assert median == float(np.median(key[chunk]))


if __name__ == "__main__":
    arrays = {}
    for name, codes in _frames().items():
        arrays[f"{name}/codes"] = codes
        for key, value in _outputs(codes.astype(np.float32) / np.float32(65535)).items():
            arrays[f"{name}/{key}"] = value
        print(name, int(arrays[f"{name}/labels"].max()), "particles", arrays[f"{name}/noise"])
    np.savez_compressed(DATA, **arrays)
    print(DATA, DATA.stat().st_size, "bytes")
