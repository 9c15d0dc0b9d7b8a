"""Progress reporting of the long phases (issue 15): synthesis counts and training's per-phase bars."""

import pytest

from semqa.synth.scenes import SynthConfig, make_lots, make_pairs
from training.train import _phase_bar


@pytest.mark.parametrize("workers", [1, 2])
def test_synthesis_reports_every_image(tmp_path, workers):
    seen: list[tuple[int, int]] = []
    make_pairs(tmp_path / "p", 3, SynthConfig(size_px=128, d50_um=1.0), workers=workers, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    lots: list[tuple[int, int]] = []
    make_lots(tmp_path / "l", lots=2, images_per_lot=1, config=SynthConfig(size_px=128, d50_um=1.0), workers=workers,
              progress=lambda d, t: lots.append((d, t)))
    assert lots == [(i, 6) for i in range(1, 7)]  # 3 default products × 2 lots × 1 image


def test_training_bar_covers_one_phase_at_a_time():
    pre = _phase_bar(0, 10, pretrain_steps=4)
    gan = _phase_bar(4, 10, pretrain_steps=4)
    resumed = _phase_bar(2, 3, pretrain_steps=4)  # a run stopping before the GAN phase
    try:
        assert (pre.desc, pre.n, pre.total) == ("pretraining", 0, 4)
        assert (gan.desc, gan.n, gan.total) == ("training (GAN)", 4, 10)
        assert (resumed.n, resumed.total) == (2, 3)
    finally:
        for bar in (pre, gan, resumed):
            bar.close()
