"""What the demo relies on to do less work: analysed lots reused across comparisons, and
instrument TIFFs written in parallel, each the same as the plain path (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from semqa.analysis import AnalysisConfig, analyze, analyze_lots, compare, compare_analysed, load_lots
from semqa.errors import InputError
from semqa.io.images import read_image


def _lots(folder: Path) -> dict:
    return {lot: [read_image(p) for p in files] for lot, files in load_lots(folder).items()}


def test_comparing_analysed_lots_is_comparing_the_lots(lots_root: Path) -> None:
    reference, test = _lots(lots_root / "rld" / "lr"), _lots(lots_root / "generic" / "lr")
    direct = compare(reference, test)
    analysed_ref = analyze_lots(reference)
    reused = compare_analysed(analysed_ref, analyze_lots(test, role="test"))
    assert reused.verdict == direct.verdict and reused.statistics == direct.statistics
    for side in ("reference", "test"):
        for lot, result in getattr(direct, side).items():
            again = getattr(reused, side)[lot]
            assert again.psd == result.psd and again.particles == result.particles and again.images == result.images
    assert reused.lineage.input_digests == direct.lineage.input_digests
    # One lot of the analysed product is what analyze() of its images returns.
    lot1 = analyze(reference["lot1"])
    assert analysed_ref.summary("lot1").psd == lot1.psd and analysed_ref.summary("lot1").particles == lot1.particles


def test_analysed_lots_with_other_settings_are_refused(lots_root: Path) -> None:
    reference, test = _lots(lots_root / "rld" / "lr"), _lots(lots_root / "generic" / "lr")
    coarser = analyze_lots(reference, config=AnalysisConfig(min_pixels=20))
    with pytest.raises(InputError, match="different settings"):
        compare_analysed(coarser, analyze_lots(test, role="test"))


def test_instrument_tiffs_are_the_same_for_any_number_of_workers(lots_root: Path, tmp_path: Path) -> None:
    from semqa.synth.databar import rewrite_as_instrument

    seen: list[tuple[int, int]] = []
    serial = rewrite_as_instrument(lots_root / "rld", tmp_path / "serial", vendor="fei", seed=3)
    parallel = rewrite_as_instrument(lots_root / "rld", tmp_path / "parallel", vendor="fei", seed=3, workers=2,
                                     progress=lambda done, total: seen.append((done, total)))
    files = sorted(p.relative_to(serial) for p in serial.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(parallel) for p in parallel.rglob("*") if p.is_file())
    assert any(f.suffix == ".tif" for f in files) and any(f.suffix == ".csv" for f in files)
    for f in files:
        assert (serial / f).read_bytes() == (parallel / f).read_bytes(), f
    n_tiffs = sum(f.suffix == ".tif" for f in files)
    assert seen == [(i, n_tiffs) for i in range(1, n_tiffs + 1)]


def test_super_resolved_analysis_is_the_same_segmented_in_a_pool(lots_root: Path) -> None:
    import torch

    from semqa.results import ModelRef
    from semqa.sr.archs import GeneratorConfig, build_generator
    from semqa.sr.inference import Upscaler

    torch.manual_seed(0)  # an untrained generator: its output is a fixed function of the input all the same
    upscaler = Upscaler(build_generator(GeneratorConfig(arch="srvgg", num_feat=8, num_conv=2, scale=4)),
                        ModelRef(name="untrained", scale=4), device="cpu")
    images = _lots(lots_root / "rld" / "lr")["lot1"]
    serial = analyze(images, upscaler=upscaler)
    pooled = analyze(images, upscaler=upscaler, workers=2)
    assert serial.particles, "nothing to compare: the untrained generator left no particles"
    assert pooled.particles == serial.particles and pooled.images == serial.images and pooled.psd == serial.psd
    assert pooled.sr and pooled.lineage.model == serial.lineage.model
