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



# --- training's time left, per phase (fed step durations, not timed) -----------------------------

from training.progress import PhaseEta, format_seconds


def test_time_left_is_estimated_per_phase_from_its_own_steps() -> None:
    eta = PhaseEta([("pretrain", 100), ("gan", 300)], window=20)
    assert eta.describe(0, 300) == "pretrain ? + gan ?"
    for step in range(40):  # pretraining: 0.1 s a step, one slow checkpoint step
        eta.add(step, 2.0 if step == 30 else 0.1)
    # 60 pretraining steps at 0.1 s (the median ignores the slow one); the GAN phase has no rate yet.
    assert eta.remaining(40, 300) == {"pretrain": 60 * 0.1, "gan": None}
    assert eta.describe(40, 300) == "pretrain 0:06 + gan ?"
    for step in range(40, 110):
        eta.add(step, 0.1 if step < 100 else 0.5)
    assert eta.phase_of(99) == "pretrain" and eta.phase_of(100) == "gan"
    # 190 GAN steps at the GAN phase's own 0.5 s, not the 0.1 s an overall rate would give.
    assert eta.remaining(110, 300) == {"gan": 190 * 0.5}
    assert eta.describe(110, 300) == "1:35"
    assert eta.remaining(110, 200) == {"gan": 90 * 0.5}  # a --max-steps stop inside the phase
    assert eta.describe(300, 300) == "0:00"


def test_a_training_without_pretraining_has_one_phase() -> None:
    eta = PhaseEta([("pretrain", 0), ("gan", 50)])
    assert [p[0] for p in eta.phases] == ["gan"] and eta.phase_of(0) == "gan"
    eta.add(0, 3.0)
    assert eta.describe(1, 50) == "2:27"
    assert format_seconds(3725) == "1:02:05"
