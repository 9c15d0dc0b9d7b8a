"""The generator's evaluation gives the same metrics whether its analyses run here or in a pool (issue 15)."""

from __future__ import annotations

from pathlib import Path

import torch

from semqa.evaluation import evaluate_generator
from semqa.sr.archs import GeneratorConfig, build_generator
from semqa.sr.pairs import load_pairs
from semqa.synth.scenes import SynthConfig, make_pairs


def test_pooled_analyses_give_the_metrics_of_the_serial_ones(tmp_path: Path) -> None:
    pairs = load_pairs(make_pairs(tmp_path, 3, SynthConfig(size_px=128, d50_um=1.5), seed=11), 4)
    torch.manual_seed(0)
    generator = build_generator(GeneratorConfig(scale=4, num_feat=8, num_conv=1))
    serial = evaluate_generator(generator, pairs, workers=1)
    pooled = evaluate_generator(generator, pairs, workers=2)
    assert serial.n_particles_hr > 0 and serial.n_images == 3
    assert pooled == serial
