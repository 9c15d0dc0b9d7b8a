"""Progress reporting of the demo's long phases (issue 15): synthesis counts every image."""

import pytest

from semqa.synth.scenes import SynthConfig, make_lots, make_pairs


@pytest.mark.parametrize("workers", [1, 2])
def test_synthesis_reports_every_image(tmp_path, workers):
    seen: list[tuple[int, int]] = []
    make_pairs(tmp_path / "p", 3, SynthConfig(size_px=128, d50_um=1.0), workers=workers, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    lots: list[tuple[int, int]] = []
    make_lots(tmp_path / "l", lots=2, images_per_lot=1, config=SynthConfig(size_px=128, d50_um=1.0), workers=workers,
              progress=lambda d, t: lots.append((d, t)))
    assert lots == [(i, 6) for i in range(1, 7)]  # 3 default products × 2 lots × 1 image

