"""Promotion gates of the learned segmenter (``semqa-segmenter``), for :func:`semqa.registry.promotion.promote`.

The segmenter is judged on an annotated evaluation set (images with reference instance
masks: a user's own, or the seeded randomized synthetic set of :func:`segmenter_eval_set`)
by :func:`semqa.particles.matching.score_set`:

* to ``staging``: the training data passed its checks, and matched precision and recall
  (IoU > 0.5) are at least ``min_precision`` / ``min_recall``: the model finds particles;
* to ``production``: staged; mean per-image count error ≤ 10 % and D50 error ≤ 5 % (the
  accuracy issue #14 sets for real agglomerated micrographs); and no regression beyond a
  tolerance against the current production segmenter on the same set.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import Field

from semqa.registry.audit import GateCheck
from semqa.registry.gate_checks import (
    BaseGateConfig,
    BaseGateMetrics,
    at_most,
    data_validation_check,
    increase,
    no_regression_check,
    regression_checks,
    staged_check,
)
from semqa.registry.promotion import GatePolicy
from semqa.registry.store import store_dir


class SegmenterGateConfig(BaseGateConfig):
    """Every segmenter promotion limit in one place."""

    min_precision: float = Field(0.5, ge=0, le=1, description="staging: matched precision at IoU > 0.5")
    min_recall: float = Field(0.5, ge=0, le=1, description="staging: matched recall at IoU > 0.5")
    max_count_rel_error: float = Field(0.10, gt=0, description="production: mean per-image |n − n_true| / n_true")
    max_d50_rel_error: float = Field(0.05, gt=0, description="production: mean per-image |D50 − D50_true| / D50_true")
    max_count_rel_error_increase: float = Field(0.02, ge=0, description="production: allowed increase vs production")
    max_d50_rel_error_increase: float = Field(0.01, ge=0, description="production: allowed increase vs production")
    max_recall_drop: float = Field(0.02, ge=0, description="production: allowed recall loss vs production")
    eval_images: int = Field(8, ge=1, description="images of the generated evaluation set")
    eval_size_px: int = Field(384, ge=64, description="side of the generated evaluation images, px")
    eval_seed: int = Field(20261214, description="seed of the generated evaluation set")


class SegmenterGateMetrics(BaseGateMetrics):
    """What the segmenter gates read (:class:`semqa.particles.matching.SegmentationScore` fields)."""

    count_rel_error: float
    recall: float


def staging_checks(data_validation: str | None, metrics: SegmenterGateMetrics, config: SegmenterGateConfig) -> list[GateCheck]:
    """Gates to ``staging``: data checks passed; precision and recall above their floors."""
    checks = [data_validation_check(data_validation)] if config.require_data_validation else []
    for name, value, floor in (("precision", metrics.precision, config.min_precision), ("recall", metrics.recall, config.min_recall)):
        ok = value >= floor
        checks.append(GateCheck(name=name, passed=ok, value=value, limit=floor, detail=f"{name} {value:.3f} {'>=' if ok else '<'} {floor:.3f}"))
    return checks


def production_checks(
    staged: bool,
    metrics: SegmenterGateMetrics,
    production: SegmenterGateMetrics | None,
    production_version: str | None,
    config: SegmenterGateConfig,
) -> list[GateCheck]:
    """Gates to ``production``: staged, count and D50 error limits, no regression vs production."""
    checks = [
        staged_check(staged),
        at_most("count_rel_error", metrics.count_rel_error, config.max_count_rel_error),
        at_most("d50_rel_error", metrics.d50_rel_error, config.max_d50_rel_error),
    ]
    if production is None:
        return [*checks, no_regression_check()]
    regressions = [
        ("count_rel_error_increase", metrics.count_rel_error - production.count_rel_error, config.max_count_rel_error_increase, ""),
        ("d50_rel_error_increase", increase(metrics.d50_rel_error, production.d50_rel_error), config.max_d50_rel_error_increase, ""),
        ("recall_drop", production.recall - metrics.recall, config.max_recall_drop, ""),
    ]
    return checks + regression_checks(regressions, production_version)


SEGMENTER_GATES = GatePolicy(SegmenterGateMetrics, staging_checks, production_checks)


def segmenter_eval_set(config: SegmenterGateConfig | None = None) -> Path:
    """The seeded randomized synthetic annotated set, written once under ``mlruns/eval_sets/``."""
    from semqa.synth.randomized import write_annotated_set

    config = config or SegmenterGateConfig()
    key = hashlib.sha256(json.dumps(["segmenter", config.eval_images, config.eval_size_px, config.eval_seed]).encode())
    folder = (store_dir() / "eval_sets" / f"segmenter-{key.hexdigest()[:16]}").resolve()
    if not (folder / "labels").is_dir():
        tmp = folder.with_name(folder.name + ".partial")
        write_annotated_set(tmp, config.eval_images, config.eval_size_px, config.eval_seed)
        tmp.rename(folder)
    return folder


def segmenter_evaluator(model_uri: str, eval_dir: Path) -> dict:
    """The :data:`semqa.registry.promotion.Evaluator` of segmenters: score on an annotated folder."""
    from semqa.particles.annotations import load_annotated
    from semqa.particles.learned import load_segmenter
    from semqa.particles.matching import score_set

    segmenter = load_segmenter(model_uri, device="cpu")
    return score_set(segmenter.segment, load_annotated(eval_dir)).model_dump()
