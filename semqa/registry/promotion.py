"""Promotion of generator versions through ``staging`` → ``production`` behind gates.

Stages are MLflow registry *aliases* on :data:`semqa.registry.store.MODEL_NAME` (the old stage
field is deprecated since MLflow 2.9): ``staging``, ``production`` and ``archived``, each
held by at most one version. Promoting moves an alias; when ``production`` moves, the
version that held it gets ``archived`` and is recorded on the new production version
(tag :data:`TAG_PREVIOUS_PRODUCTION`) so :func:`rollback` can restore it.

Gates are evaluated on a fixed evaluation set whose digest is recorded:

* to ``staging``: the training data passed validation (tag written at training) and the
  generator beats bicubic interpolation in PSNR;
* to ``production``: the version holds ``staging``; the PSD fidelity limits (D50 relative
  error, Wasserstein distance of ECD distributions, hallucinated-particle rate
  ``1 − precision``) are met; and no metric regresses beyond a tolerance against the
  current production version evaluated on the same set.

Each evaluation is its own MLflow run (experiment :data:`GATE_EXPERIMENT`, tagged with the
model version) and the version is tagged with that run's id. The evaluation is the core's one
evaluation path, :func:`semqa.evaluation.evaluate_model_uri` (SR analysed against the HR scan
of the same field); callers may pass another :data:`Evaluator`. Every action is appended to
the audit trail (:mod:`semqa.registry.audit`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field, SerializeAsAny

from semqa.registry.audit import AuditEntry, GateCheck, append_audit_entry, current_user, utc_now
from semqa.errors import CheckFailed, InputError
from semqa.io.digests import folder_digest
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
from semqa.registry.store import MODEL_NAME, configure_tracking, ensure_experiment, store_dir

Alias = Literal["staging", "production"]
STAGING, PRODUCTION, ARCHIVED = "staging", "production", "archived"
ALIASES: tuple[str, ...] = (STAGING, PRODUCTION, ARCHIVED)

#: Experiment holding the gate-evaluation runs.
GATE_EXPERIMENT = "semqa-gate-evaluations"
#: Version tag: run id of the version's latest gate evaluation.
TAG_EVAL_RUN = "semqa.eval_run_id"
#: Version tag prefix: ``semqa.eval.<digest16>`` → evaluation run on that evaluation set.
TAG_EVAL_PREFIX = "semqa.eval."
#: Version tag prefix: ``semqa.gates.<alias>`` → JSON summary of the last gate decision.
TAG_GATES_PREFIX = "semqa.gates."
#: Version tag: the production version this one replaced (what rollback restores).
TAG_PREVIOUS_PRODUCTION = "semqa.previous_production"
#: Run tags of an evaluation run.
RUN_TAG_MODEL_NAME, RUN_TAG_MODEL_VERSION, RUN_TAG_EVAL_DIGEST = (
    "semqa.model_name",
    "semqa.model_version",
    "semqa.eval_set_digest",
)
#: Tag (on the version, else on its training run) with the training data's validation
#: outcome, ``true`` or ``false``; written by :func:`validation.reports.log_report_to_mlflow`.
TAG_DATA_VALIDATION = "validation.success"


class GateConfig(BaseGateConfig):
    """Every promotion limit in one place (defaults are the documented team policy).

    PSD fidelity limits compare the PSD measured on the super-resolved LR images of the
    evaluation set with the PSD measured on the HR scans of the same fields
    (:func:`semqa.evaluation.evaluate_generator`): the HR scan is the reference, not a
    synthetic ground truth (real evaluation sets have none). The 10 % D50 limit follows the usual
    acceptance for median size by image analysis against a reference method (ISO 13322-1
    asks the method be validated against a reference; USP <776> microscopy). Regression
    tolerances bound how much worse than the current production version a candidate may be
    on the same set.
    """

    min_psnr_gain_db: float = Field(0.0, description="staging: PSNR(SR) − PSNR(bicubic) must exceed this, dB")
    max_wasserstein_um: float = Field(0.5, gt=0, description="production: 1-Wasserstein distance of ECD distributions, µm")
    max_hallucination_rate: float = Field(0.10, ge=0, le=1, description="production: 1 − precision of detected particles")
    max_psnr_drop_db: float = Field(0.5, ge=0, description="production: allowed PSNR loss vs current production, dB")
    max_d50_rel_error_increase: float = Field(0.02, ge=0, description="production: allowed D50 error increase vs production")
    max_wasserstein_increase_um: float = Field(0.1, ge=0, description="production: allowed Wasserstein increase vs production, µm")
    max_hallucination_rate_increase: float = Field(0.02, ge=0, description="production: allowed hallucination increase")
    # 8 fields of 51.2 µm hold about 200 particles at the default D50 of 3 µm: enough that
    # the D-values compared are not dominated by a handful of particles.
    eval_pairs: int = Field(8, ge=1, description="pairs in the generated evaluation set")
    eval_size_px: int = Field(512, ge=64, description="HR side of the generated evaluation images, px")


class GateMetrics(BaseGateMetrics):
    """What the gates read from an evaluation (:class:`semqa.evaluation.EvalMetrics` field names).

    ``d50_rel_error`` and ``wasserstein`` are ``None`` where the SR images gave no particles.
    """

    psnr: float = Field(description="dB, SR vs HR")
    bicubic_psnr: float = Field(description="dB, bicubic upscale vs HR")
    wasserstein: float | None = Field(None, description="1-Wasserstein distance of SR vs HR ECDs, in size_unit")
    size_unit: str = Field("um", description="unit of wasserstein: 'um', or 'px' without pixel sizes")

    @property
    def hallucination_rate(self) -> float:
        """Share of SR particles with no HR counterpart: ``1 − precision``."""
        return 1.0 - self.precision


#: ``evaluator(model_uri, eval_dir)`` → metrics containing at least :class:`GateMetrics`' fields
#: (a mapping or a pydantic model).
Evaluator = Callable[[str, Path], Mapping[str, float] | BaseModel]


class EvalSet(BaseModel):
    """A fixed evaluation set: where it is and the digest of its files."""

    path: Path
    digest: str


class Evaluation(BaseModel):
    """One gate evaluation of one version (an MLflow run)."""

    version: str
    run_id: str
    eval_set_digest: str
    metrics: SerializeAsAny[BaseModel] = Field(description="the policy's metrics model (GateMetrics for the generator)")
    all_metrics: dict[str, float] = Field(default_factory=dict)


class PromotionRefused(InputError):
    """The registry refused the action: unauthenticated or not permitted."""

    http_status = 403


# --- evaluation set ---------------------------------------------------------------------


def eval_set(eval_data: Path | None = None, config: GateConfig | None = None) -> EvalSet:
    """The evaluation set: ``eval_data`` if given, else the seeded synthetic set.

    The synthetic set (:func:`semqa.synth.scenes.make_pairs`, ``config.eval_pairs`` pairs of
    ``config.eval_size_px`` px at ``config.eval_seed``) is generated once under ``<store folder>/eval_sets/<key>`` (:func:`semqa.registry.store.store_dir`) and reused.
    """
    if eval_data is not None:
        return EvalSet(path=Path(eval_data).resolve(), digest=folder_digest(Path(eval_data)))
    from semqa.pool import available_cores
    from semqa.synth.scenes import SynthConfig, make_pairs

    config = config or GateConfig()
    synth = SynthConfig(size_px=config.eval_size_px)
    key = hashlib.sha256(json.dumps([config.eval_pairs, config.eval_seed, synth.model_dump(mode="json")], sort_keys=True).encode())
    folder = (store_dir() / "eval_sets" / key.hexdigest()[:16]).resolve()
    if not (folder / "manifest.csv").is_file():
        tmp = folder.with_name(folder.name + ".partial")
        # On every core: the files do not depend on the number of workers (tests/test_synth.py).
        make_pairs(tmp, config.eval_pairs, synth, seed=config.eval_seed, workers=available_cores())
        tmp.rename(folder)
    return EvalSet(path=folder, digest=folder_digest(folder))


# --- registry access ---------------------------------------------------------------------


@contextmanager
def _registry_errors(action: str) -> Iterator[None]:
    """Turn MLflow's refusals into one-line semqa errors."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        first = str(exc.message).splitlines()[0] if exc.message else code
        if code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
            raise PromotionRefused(f"{action} refused by the registry for user {current_user()!r}: {first}") from None
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise InputError(f"{action}: {first}") from None
        raise


def _client() -> Any:
    import mlflow

    configure_tracking()
    return mlflow.MlflowClient()


def _version(client: Any, version: str | int, name: str = MODEL_NAME) -> Any:
    with _registry_errors(f"reading {name} version {version}"):
        return client.get_model_version(name, str(version))


def alias_holders(client: Any, name: str = MODEL_NAME) -> dict[str, str]:
    """``{alias: version}`` of the registered model's semqa aliases."""
    with _registry_errors(f"reading {name}"):
        aliases = client.get_registered_model(name).aliases
    return {a: str(v) for a, v in aliases.items() if a in ALIASES}


def _data_validation(client: Any, mv: Any) -> str | None:
    value = mv.tags.get(TAG_DATA_VALIDATION)
    if value is None and mv.run_id:
        value = client.get_run(mv.run_id).data.tags.get(TAG_DATA_VALIDATION)
    return value


# --- evaluation --------------------------------------------------------------------------


def _metrics_dict(data: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric fields (undefined metrics such as a D50 error without particles left out)."""
    return {
        k: float(v) for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def evaluate_version(
    version: str | int,
    evaluator: Evaluator | None,
    evaluation_set: EvalSet,
    *,
    client: Any = None,
    name: str = MODEL_NAME,
    metrics_model: type[BaseModel] = GateMetrics,
) -> Evaluation:
    """Evaluate ``version`` on ``evaluation_set`` as its own MLflow run, or reuse the earlier one.

    An earlier evaluation of the same version on a set with the same digest is reused (the
    version is tagged ``semqa.eval.<digest16>``), so the current production version is not
    re-evaluated at every promotion.

    ``evaluator`` defaults to :func:`semqa.evaluation.evaluate_model_uri`.

    Raises
    ------
    CheckFailed
        The evaluator's result lacks a metric the gates need.
    """
    client = client or _client()
    mv = _version(client, version, name)
    cache_tag = TAG_EVAL_PREFIX + evaluation_set.digest.removeprefix("sha256:")[:16]
    if cache_tag in mv.tags:
        run = client.get_run(mv.tags[cache_tag])
        return Evaluation(
            version=str(mv.version),
            run_id=run.info.run_id,
            eval_set_digest=evaluation_set.digest,
            metrics=metrics_model.model_validate({**run.data.metrics, **run.data.params}),
            all_metrics=run.data.metrics,
        )
    if evaluator is None:
        from semqa.evaluation import evaluate_model_uri as evaluator  # torch and the analysis: only when evaluating
    with _registry_errors(f"evaluating {name} version {mv.version}"):
        result = evaluator(f"models:/{name}/{mv.version}", evaluation_set.path)
        data = result.model_dump() if isinstance(result, BaseModel) else dict(result)
        raw = _metrics_dict(data)
        size_unit = str(data.get("size_unit", "um"))
        try:
            metrics = metrics_model.model_validate({**raw, "size_unit": size_unit})
        except ValueError as exc:
            raise CheckFailed(f"evaluation of version {mv.version} lacks gate metrics: {exc.errors()[0]['loc']}") from None
        experiment_id = ensure_experiment(client, GATE_EXPERIMENT)
        run = client.create_run(
            experiment_id,
            run_name=f"gates-{name}-v{mv.version}",
            tags={
                RUN_TAG_MODEL_NAME: name,
                RUN_TAG_MODEL_VERSION: str(mv.version),
                RUN_TAG_EVAL_DIGEST: evaluation_set.digest,
                "semqa.training_run_id": mv.run_id or "",
            },
        )
        run_id = run.info.run_id
        # One request for every param and metric: one per metric name made a promotion
        # against the team server take a round trip (and a SQL transaction) per name.
        from mlflow.entities import Metric, Param

        now_ms = int(utc_now().timestamp() * 1000)  # what log_metric stamps by default, at step 0
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, now_ms, 0) for key, value in raw.items()],
            params=[Param("eval_set_path", str(evaluation_set.path)), Param("size_unit", size_unit)],
        )
        client.set_terminated(run_id)
        client.set_model_version_tag(name, mv.version, cache_tag, run_id)
        client.set_model_version_tag(name, mv.version, TAG_EVAL_RUN, run_id)
    return Evaluation(version=str(mv.version), run_id=run_id, eval_set_digest=evaluation_set.digest, metrics=metrics, all_metrics=raw)


# --- gates -------------------------------------------------------------------------------


def staging_checks(data_validation: str | None, metrics: GateMetrics, config: GateConfig) -> list[GateCheck]:
    """Gates to ``staging``: passed data validation and SR beating bicubic in PSNR.

    ``data_validation`` is the training run's ``validation.success`` tag (``"true"`` when
    the training pairs passed :func:`validation.run.validate_pairs`).
    """
    checks = [data_validation_check(data_validation)] if config.require_data_validation else []
    gain = metrics.psnr - metrics.bicubic_psnr
    ok = gain > config.min_psnr_gain_db
    checks.append(
        GateCheck(
            name="psnr_gain_over_bicubic",
            passed=ok,
            value=gain,
            limit=config.min_psnr_gain_db,
            detail=f"PSNR gain over bicubic {gain:.3f} dB {'>' if ok else '<='} {config.min_psnr_gain_db:.3f} dB "
            f"(SR {metrics.psnr:.2f} dB, bicubic {metrics.bicubic_psnr:.2f} dB)",
        )
    )
    return checks


def production_checks(
    staged: bool, metrics: GateMetrics, production: GateMetrics | None, production_version: str | None, config: GateConfig
) -> list[GateCheck]:
    """Gates to ``production``: staged first, PSD fidelity limits, no regression vs production."""
    checks = [
        staged_check(staged),
        at_most("d50_rel_error", metrics.d50_rel_error, config.max_d50_rel_error),
        at_most("wasserstein_um", metrics.wasserstein, config.max_wasserstein_um, " µm"),
        at_most("hallucination_rate", metrics.hallucination_rate, config.max_hallucination_rate),
    ]
    if metrics.size_unit != "um":
        checks[2] = GateCheck(
            name="wasserstein_um", passed=False, limit=config.max_wasserstein_um,
            detail=f"Wasserstein distance is in {metrics.size_unit}, not µm: the evaluation set lacks pixel sizes",
        )
    if production is None:
        return [*checks, no_regression_check()]
    regressions = [
        ("psnr_drop_db", production.psnr - metrics.psnr, config.max_psnr_drop_db, " dB"),
        ("d50_rel_error_increase", increase(metrics.d50_rel_error, production.d50_rel_error), config.max_d50_rel_error_increase, ""),
        ("wasserstein_increase_um", increase(metrics.wasserstein, production.wasserstein), config.max_wasserstein_increase_um, " µm"),
        (
            "hallucination_rate_increase",
            metrics.hallucination_rate - production.hallucination_rate,
            config.max_hallucination_rate_increase,
            "",
        ),
    ]
    return checks + regression_checks(regressions, production_version)


@dataclass(frozen=True)
class GatePolicy:
    """What promotion checks for one registered model: its metrics model and its two gates.

    ``staging(data_validation, metrics, config)`` and ``production(staged, metrics,
    production_metrics, production_version, config)`` return the gate checks; ``metrics``
    validates the evaluator's output. :data:`GENERATOR_GATES` is the generator's;
    :mod:`semqa.registry.segmenter_gates` holds the learned segmenter's.
    """

    metrics: type[BaseModel]
    staging: Callable[..., list[GateCheck]]
    production: Callable[..., list[GateCheck]]


GENERATOR_GATES = GatePolicy(GateMetrics, staging_checks, production_checks)


# --- promotion and rollback --------------------------------------------------------------


def _record_gates(client: Any, name: str, version: str, alias: str, entry: AuditEntry) -> None:
    summary = {
        "passed": entry.gates_passed,
        "forced": entry.forced,
        "eval_run_id": entry.eval_run_id,
        "timestamp": entry.timestamp.isoformat(),
        "failed": [g.name for g in entry.gates if not g.passed],
    }
    client.set_model_version_tag(name, version, TAG_GATES_PREFIX + alias, json.dumps(summary))


def promote(
    version: str | int,
    to: Alias,
    reason: str,
    force: bool = False,
    *,
    evaluator: Evaluator | None = None,
    eval_data: Path | None = None,
    config: BaseModel | None = None,
    name: str = MODEL_NAME,
    policy: GatePolicy = GENERATOR_GATES,
) -> AuditEntry:
    """Move alias ``to`` onto ``version`` if its gates pass (or ``force``), and audit it.

    Parameters
    ----------
    version
        Registered version number.
    to
        ``"staging"`` or ``"production"``.
    reason
        Why; required (stored in the audit trail).
    force
        Move the alias even if a gate fails; the entry is recorded as forced.
    evaluator
        Computes the gate metrics of a model URI on the evaluation set; default
        :func:`semqa.evaluation.evaluate_model_uri`.
    eval_data
        Evaluation set folder; default the seeded synthetic set (:func:`eval_set`).
    config
        Gate limits; default :class:`GateConfig` (the generator's; pass the policy's own).
    name
        Registered model name.
    policy
        Metrics model and gates of that model; default the generator's.

    Returns
    -------
    AuditEntry
        The audit record as stored in the registry.

    Raises
    ------
    CheckFailed
        A gate failed (the message names each failed limit) and ``force`` is false.
    PromotionRefused
        The registry refused the change (not authenticated, or no permission).
    InputError
        Unknown version, empty reason, or an alias that is not a promotion target.
    """
    if to not in (STAGING, PRODUCTION):
        raise InputError(f"cannot promote to {to!r}: use staging or production")
    if not reason or not reason.strip():
        raise InputError("a reason is required for every promotion")
    config = config or GateConfig()
    client = _client()
    mv = _version(client, version, name)
    v = str(mv.version)
    holders = alias_holders(client, name)
    if holders.get(to) == v:
        raise InputError(f"version {v} already holds {to!r}")

    evaluation_set = eval_set(eval_data, config)
    gates: list[GateCheck]
    evaluation: Evaluation | None = None
    try:
        evaluation = evaluate_version(v, evaluator, evaluation_set, client=client, name=name, metrics_model=policy.metrics)
        if to == STAGING:
            gates = policy.staging(_data_validation(client, mv), evaluation.metrics, config)
        else:
            prod_v = holders.get(PRODUCTION)
            prod = (
                evaluate_version(prod_v, evaluator, evaluation_set, client=client, name=name, metrics_model=policy.metrics).metrics
                if prod_v
                else None
            )
            gates = policy.production(holders.get(STAGING) == v, evaluation.metrics, prod, prod_v, config)
    except (CheckFailed, InputError) as exc:
        if isinstance(exc, PromotionRefused) or not force:
            raise
        gates = [GateCheck(name="evaluation", passed=False, detail=f"evaluation failed: {exc}")]
    passed = all(g.passed for g in gates)
    if not passed and not force:
        failed = "; ".join(g.detail for g in gates if not g.passed)
        raise CheckFailed(f"promotion of version {v} to {to} blocked: {failed}")

    entry = AuditEntry(
        action="promote",
        model_name=name,
        alias=to,
        version=v,
        from_version=holders.get(to),
        user=current_user(),
        timestamp=utc_now(),
        reason=reason.strip(),
        forced=force,
        gates_passed=passed,
        gates=gates,
        eval_run_id=evaluation.run_id if evaluation else None,
        eval_set_digest=evaluation_set.digest,
    )
    with _registry_errors(f"promoting version {v} to {to}"):
        # Removing an alias needs MANAGE on the model (setting one needs EDIT): do it first,
        # so a user without it is refused before anything has moved.
        if to == PRODUCTION and holders.get(STAGING) == v:
            client.delete_registered_model_alias(name, STAGING)
        client.set_registered_model_alias(name, to, v)
        previous = holders.get(PRODUCTION) if to == PRODUCTION else None
        if previous:
            client.set_registered_model_alias(name, ARCHIVED, previous)
            client.set_model_version_tag(name, v, TAG_PREVIOUS_PRODUCTION, previous)
            entry.archived_version = previous
        _record_gates(client, name, v, to, entry)
        return append_audit_entry(client, entry)


def rollback(reason: str, *, name: str = MODEL_NAME) -> AuditEntry:
    """Give ``production`` back to the version the current one replaced; archive the current.

    Raises
    ------
    InputError
        No production version, or it records no previous version.
    PromotionRefused
        The registry refused the change.
    """
    if not reason or not reason.strip():
        raise InputError("a reason is required for a rollback")
    client = _client()
    holders = alias_holders(client, name)
    current = holders.get(PRODUCTION)
    if current is None:
        raise InputError(f"{name} has no production version to roll back")
    previous = _version(client, current, name).tags.get(TAG_PREVIOUS_PRODUCTION)
    if previous is None:
        raise InputError(f"production version {current} records no previous production version to restore")
    _version(client, previous, name)
    entry = AuditEntry(
        action="rollback",
        model_name=name,
        alias=PRODUCTION,
        version=previous,
        from_version=current,
        archived_version=current,
        user=current_user(),
        timestamp=utc_now(),
        reason=reason.strip(),
    )
    with _registry_errors(f"rolling back production from version {current}"):
        client.set_registered_model_alias(name, PRODUCTION, previous)
        client.set_registered_model_alias(name, ARCHIVED, current)
        return append_audit_entry(client, entry)


# --- listing -----------------------------------------------------------------------------


def _gate_status(tags: Mapping[str, str], alias: str) -> str:
    raw = tags.get(TAG_GATES_PREFIX + alias)
    if raw is None:
        return ""
    summary = json.loads(raw)
    status = "passed" if summary["passed"] else "failed: " + ",".join(summary["failed"])
    return status + (" (forced)" if summary["forced"] else "")


def list_versions(name: str = MODEL_NAME) -> pd.DataFrame:
    """One row per version: aliases, training and gate-evaluation metrics, gate status."""
    client = _client()
    with _registry_errors(f"listing {name}"):
        versions = client.search_model_versions(f"name = '{name}'")
        holders = alias_holders(client, name) if versions else {}
    rows = []
    for mv in sorted(versions, key=lambda m: int(m.version)):
        v = str(mv.version)
        eval_metrics = client.get_run(mv.tags[TAG_EVAL_RUN]).data.metrics if TAG_EVAL_RUN in mv.tags else {}
        rows.append(
            {
                "version": v,
                "aliases": ",".join(a for a in ALIASES if holders.get(a) == v),
                "created": pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M"),
                "run_id": mv.run_id,
                "data_validation": _data_validation(client, mv) or "",
                "psnr": eval_metrics.get("psnr"),
                "bicubic_psnr": eval_metrics.get("bicubic_psnr"),
                "d50_rel_error": eval_metrics.get("d50_rel_error"),
                "wasserstein": eval_metrics.get("wasserstein"),
                "precision": eval_metrics.get("precision"),
                "gates_staging": _gate_status(mv.tags, STAGING),
                "gates_production": _gate_status(mv.tags, PRODUCTION),
            }
        )
    return pd.DataFrame(rows)
