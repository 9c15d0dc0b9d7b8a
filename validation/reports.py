"""Validation reports (pydantic) and how training records them in MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from validation.config import ValidationConfig


class CheckResult(BaseModel):
    """One check of a suite and the rows that failed it."""

    check: str
    description: str
    success: bool
    failed: list[str] = Field(description="pair names (pair sets) or <lot>/<image> (lots) that failed, sorted")


class ValidationReport(BaseModel):
    """What every validation report holds; files are in ``report_dir``."""

    success: bool
    failures: dict[str, list[str]] = Field(description="failing check → the rows that failed it; empty when all pass")
    checks: list[CheckResult]
    dataset_digest: str = Field(description="sha256 over the sorted per-file digests (validation.dataset.dataset_digest)")
    report_dir: Path
    data_docs_index: Path = Field(description="GX Data Docs index.html")
    rows_csv: Path = Field(description="the validated table, one row per pair or image")
    suite_json: Path = Field(description="the GX expectation suite")
    result_json: Path = Field(description="the GX validation result")
    report_json: Path = Field(description="this report")
    config: ValidationConfig


class PairValidationReport(ValidationReport):
    """Validation of a pair set ``DIR/hr/*``, ``DIR/lr/*``."""

    kind: Literal["pairs"] = "pairs"
    pair_dir: Path
    n_pairs: int = Field(description="file names in hr/ or lr/ (a name in only one counts once)")
    n_failed_pairs: int
    scale: int
    scale_source: Literal["config", "manifest", "default"]
    bit_depth: int | None
    bit_depth_source: Literal["config", "manifest", "inferred", "none"]


class LotValidationReport(ValidationReport):
    """Validation of images to analyze, ``DIR/<lot>/*`` or one folder of images."""

    kind: Literal["lots"] = "lots"
    folder: Path
    n_images: int
    n_failed_images: int
    lots: dict[str, int] = Field(description="lot → number of images")
    pixel_size_um: float | None = Field(None, description="pixel size given by the caller, overriding metadata")
    focus_undetermined: list[str] = Field(
        default_factory=list,
        description="images whose noise leaves the focus undecided (blur bounds on both sides of the limit): not "
        "refused, but their focus is not confirmed",
    )


def log_report_to_mlflow(report: ValidationReport, artifact_path: str = "validation") -> None:
    """Record a validation report in the active MLflow run.

    Logs the tags ``semqa.dataset_digest`` and ``validation.success``, the params
    ``validation.kind`` / ``validation.scale`` / ``validation.bit_depth`` (pair sets), the
    metrics ``validation.success``, ``validation.n_rows``, ``validation.n_failed_rows`` and
    ``validation.failed.<check>`` (rows failing each check), and the whole report folder
    (suite, table, GX result, Data Docs, report JSON) as artifacts under ``artifact_path``.

    Raises
    ------
    RuntimeError
        When no run is active: the report belongs to a training run, not a run of its own.
    """
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("log_report_to_mlflow needs an active MLflow run (call it inside mlflow.start_run())")
    n_rows = report.n_pairs if isinstance(report, PairValidationReport) else report.n_images  # type: ignore[attr-defined]
    n_failed = report.n_failed_pairs if isinstance(report, PairValidationReport) else report.n_failed_images  # type: ignore[attr-defined]
    params: dict[str, object] = {"validation.kind": report.kind}  # type: ignore[attr-defined]
    if isinstance(report, PairValidationReport):
        params.update({"validation.scale": report.scale, "validation.bit_depth": report.bit_depth})
    mlflow.set_tags({"semqa.dataset_digest": report.dataset_digest, "validation.success": str(report.success).lower()})
    mlflow.log_params(params)
    mlflow.log_metrics(
        {
            "validation.success": float(report.success),
            "validation.n_rows": float(n_rows),
            "validation.n_failed_rows": float(n_failed),
            **{f"validation.failed.{c.check}": float(len(c.failed)) for c in report.checks},
        }
    )
    mlflow.log_artifacts(str(report.report_dir), artifact_path=artifact_path)
