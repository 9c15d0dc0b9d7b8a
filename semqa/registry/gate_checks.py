"""What every model's promotion gates share: the common limits, metrics and checks.

The generator's gates (:mod:`semqa.registry.promotion`) and the learned segmenter's
(:mod:`semqa.registry.segmenter_gates`) follow one policy: to ``staging`` the training data
passed its checks; to ``production`` the version is staged, meets absolute limits, and does not
regress beyond a tolerance against the current production version evaluated on the same set.
Each policy adds its own limits to the models below.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from semqa.registry.audit import GateCheck


class BaseGateConfig(BaseModel):
    """Limits and evaluation-set settings every gate policy has (a policy sets its own defaults)."""

    model_config = ConfigDict(extra="forbid")

    require_data_validation: bool = Field(True, description="staging: training data must have passed validation")
    max_d50_rel_error: float = Field(0.10, gt=0, description="production: |D50 − D50_reference| / D50_reference")
    eval_size_px: int = Field(512, ge=64, description="side of the generated evaluation images, px")
    eval_seed: int = Field(20260101, description="seed of the generated evaluation set")


class BaseGateMetrics(BaseModel):
    """Metrics every gate policy reads: PSD median error and matched precision/recall (IoU > 0.5)."""

    model_config = ConfigDict(extra="ignore")

    d50_rel_error: float | None = Field(None, description="|D50 − D50_reference| / D50_reference, number-weighted ECD")
    precision: float = Field(description="found particles matched by a reference particle (IoU > 0.5)")
    recall: float | None = Field(None, description="reference particles matched by a found particle")


def at_most(name: str, value: float | None, limit: float, unit: str = "") -> GateCheck:
    """``value <= limit``; an undefined value (no particles found) fails."""
    if value is None:
        return GateCheck(name=name, passed=False, limit=limit, detail=f"{name} undefined (no particles found)")
    ok = value <= limit
    return GateCheck(
        name=name, passed=ok, value=value, limit=limit, detail=f"{name} {value:.4g}{unit} {'<=' if ok else '>'} limit {limit:.4g}{unit}"
    )


def data_validation_check(data_validation: str | None) -> GateCheck:
    """The training run's ``validation.success`` tag must read ``true``."""
    ok = data_validation == "true"
    return GateCheck(
        name="data_validation", passed=ok, value=data_validation, limit="true",
        detail="training data passed validation" if ok else f"training data validation {data_validation or 'not recorded'} (needs passed)",
    )


def staged_check(staged: bool) -> GateCheck:
    """Production needs the version to hold ``staging`` first."""
    return GateCheck(
        name="staged", passed=staged, value=str(staged).lower(), limit="true",
        detail="version holds 'staging'" if staged else "version does not hold 'staging' (promote to staging first)",
    )


def increase(new: float | None, old: float | None) -> float | None:
    """``new − old``, undefined where either is."""
    return None if new is None or old is None else new - old


def no_regression_check() -> GateCheck:
    """The passing check recorded when there is no production version to regress against."""
    return GateCheck(name="no_regression", passed=True, detail="no current production version to compare against")


def regression_checks(regressions: Iterable[tuple[str, float | None, float, str]], production_version: str) -> list[GateCheck]:
    """``(name, change, tolerance, unit)`` rows, each change at most its tolerance, against production."""
    vs = f" vs production v{production_version}"
    checks = []
    for name, value, limit, unit in regressions:
        check = at_most(name, value, limit, unit)
        checks.append(check.model_copy(update={"detail": check.detail + vs}))
    return checks
