"""Running the suites with GX and writing the report folder.

One ephemeral GX context per call (in memory, no ``gx/`` project folder, analytics
off), with one Data Docs site in ``<report>/data_docs``. A :class:`gx.Checkpoint` runs
the :class:`gx.ValidationDefinition` and its :class:`UpdateDataDocsAction` renders the
suite and the result as HTML.

The report folder holds ``suite.json``, ``pairs.csv`` / ``images.csv``,
``validation_result.json``, ``report.json`` and ``data_docs/index.html``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
import shutil
from pathlib import Path

import great_expectations as gx
import pandas as pd
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

from semqa.io.metadata import check_pixel_size
from validation.config import ValidationConfig
from semqa.io.digests import dataset_digest
from validation.data_docs import make_offline
from validation.dataset import DEFAULT_SCALE, declared_from_manifest
from validation.reports import CheckResult, LotValidationReport, PairValidationReport, ValidationReport
from validation.rows import file_digests_of_pairs, lot_table, most_common_bit_depth, pair_table
from validation.suites import CHECKS, lot_suite, pair_suite

DOCS_SITE = "semqa_validation"


def _context(docs_dir: Path) -> gx.data_context.AbstractDataContext:
    """An in-memory GX context whose one Data Docs site is ``docs_dir``."""
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={
            DOCS_SITE: {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def run_suite(
    table: pd.DataFrame, suite: gx.ExpectationSuite, index_column: str, report_dir: Path
) -> tuple[list[CheckResult], dict]:
    """Validate ``table`` against ``suite`` through a checkpoint that updates the Data Docs.

    Returns
    -------
    checks : list of CheckResult
        One per check named in the suite's ``meta["check"]``, with the ``index_column``
        values of the failing rows.
    result : dict
        The GX validation result as JSON.
    """
    docs_dir = report_dir / "data_docs"
    if docs_dir.exists():  # the report shows this run only
        shutil.rmtree(docs_dir)
    ctx = _context(docs_dir)
    asset = ctx.data_sources.add_pandas(name="semqa").add_dataframe_asset(name=suite.name)
    batch = asset.add_batch_definition_whole_dataframe(name="table")
    suite = ctx.suites.add(suite)
    definition = ctx.validation_definitions.add(gx.ValidationDefinition(name=suite.name, data=batch, suite=suite))
    checkpoint = ctx.checkpoints.add(
        gx.Checkpoint(
            name=suite.name,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE])],
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [index_column]},
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": table})
    make_offline(docs_dir)  # the lab machine that opens the report has no internet
    (result,) = run.run_results.values()
    failed: dict[str, set[str]] = {}
    for r in result.results:
        check = r.expectation_config.meta["check"]
        if r.exception_info and r.exception_info.get("raised_exception"):
            raise RuntimeError(f"GX could not evaluate check {check!r}: {r.exception_info.get('exception_message')}")
        rows = failed.setdefault(check, set())
        if not r.success:
            rows.update(str(u[index_column]) for u in r.result.get("unexpected_index_list") or [])
    checks = [
        CheckResult(check=c, description=CHECKS[c], success=not rows, failed=sorted(rows)) for c, rows in failed.items()
    ]
    return checks, result.to_json_dict()


def _write_report(
    report_dir: Path, table: pd.DataFrame, table_name: str, suite: gx.ExpectationSuite, index_column: str
) -> dict:
    """Run the suite and write its files; the fields every report shares."""
    report_dir.mkdir(parents=True, exist_ok=True)
    rows_csv, suite_json, result_json = report_dir / table_name, report_dir / "suite.json", report_dir / "validation_result.json"
    table.to_csv(rows_csv, index=False)
    checks, result = run_suite(table, suite, index_column, report_dir)
    suite_json.write_text(json.dumps(suite.to_json_dict(), indent=2, default=str) + "\n")
    result_json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    failures = {c.check: c.failed for c in checks if not c.success}
    return {
        "success": not failures,
        "failures": failures,
        "checks": checks,
        "report_dir": report_dir,
        "data_docs_index": report_dir / "data_docs" / "index.html",
        "rows_csv": rows_csv,
        "suite_json": suite_json,
        "result_json": result_json,
        "report_json": report_dir / "report.json",
    }


def _save(report: ValidationReport) -> None:
    report.report_json.write_text(report.model_dump_json(indent=2) + "\n")


def validate_pairs(
    pair_dir: str | Path,
    *,
    config: ValidationConfig | None = None,
    report_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PairValidationReport:
    """Validate a pair set ``DIR/hr/*``, ``DIR/lr/*`` and write the report folder.

    Parameters
    ----------
    pair_dir : path
        The pair set.
    config : ValidationConfig, optional
        Limits and declared scale / bit depth (see :class:`ValidationConfig` for where
        undeclared values come from).
    report_dir : path, optional
        Where the report goes; default ``DIR/validation_report``.
    progress : callable, optional
        ``progress(done, total)`` as each pair is measured (before the suite runs).

    Raises
    ------
    InputError
        ``pair_dir`` is not a pair set (no folder, no ``hr/`` or ``lr/``, no files) or its
        manifest is unreadable. Faults of the data are reported, not raised.
    """
    config = config or ValidationConfig()
    pair_dir = Path(pair_dir)
    manifest = declared_from_manifest(pair_dir)
    if config.scale is not None:
        scale, scale_source = config.scale, "config"
    elif "scale" in manifest:
        scale, scale_source = manifest["scale"], "manifest"
    else:
        scale, scale_source = DEFAULT_SCALE, "default"
    table = pair_table(pair_dir, config, scale, progress)
    if config.bit_depth is not None:
        bit_depth, depth_source = config.bit_depth, "config"
    elif "bit_depth" in manifest:
        bit_depth, depth_source = manifest["bit_depth"], "manifest"
    else:
        bit_depth = most_common_bit_depth(table, ["hr_bit_depth", "lr_bit_depth"])
        depth_source = "inferred" if bit_depth is not None else "none"
    report_dir = Path(report_dir) if report_dir is not None else pair_dir / "validation_report"
    shared = _write_report(report_dir, table, "pairs.csv", pair_suite(config, bit_depth), "pair")
    failed_rows = {name for names in shared["failures"].values() for name in names}
    report = PairValidationReport(
        **shared,
        dataset_digest=dataset_digest(file_digests_of_pairs(table)),
        config=config,
        pair_dir=pair_dir,
        n_pairs=len(table),
        n_failed_pairs=len(failed_rows),
        scale=scale,
        scale_source=scale_source,
        bit_depth=bit_depth,
        bit_depth_source=depth_source,
    )
    _save(report)
    return report


def validate_lots(
    folder: str | Path,
    *,
    config: ValidationConfig | None = None,
    report_dir: str | Path | None = None,
    pixel_size_um: float | None = None,
) -> LotValidationReport:
    """Validate images to analyze, ``DIR/<lot>/*`` or one folder of images.

    Checks: readable, pixel size known, no duplicate, grayscale, exposure, focus.
    ``pixel_size_um`` (as ``--pixel-size`` in ``semqa analyze``) overrides metadata.
    The report goes to ``report_dir`` (default ``DIR/validation_report``).
    """
    config = config or ValidationConfig()
    folder = Path(folder)
    if pixel_size_um is not None:  # a bad override is the caller's mistake, not every image's
        pixel_size_um = check_pixel_size(pixel_size_um, "given for every image")
    table = lot_table(folder, config, pixel_size_um)
    report_dir = Path(report_dir) if report_dir is not None else folder / "validation_report"
    shared = _write_report(report_dir, table, "images.csv", lot_suite(config), "image")
    failed_rows = {name for names in shared["failures"].values() for name in names}
    digests = {img: d for img, d in zip(table["image"], table["digest"], strict=True) if isinstance(d, str)}
    report = LotValidationReport(
        **shared,
        dataset_digest=dataset_digest(digests),
        config=config,
        folder=folder,
        n_images=len(table),
        n_failed_images=len(failed_rows),
        lots={str(k): int(v) for k, v in table.groupby("lot").size().items()},
        pixel_size_um=pixel_size_um,
        focus_undetermined=sorted(table.loc[table["focus_undetermined"].eq(True), "image"].astype(str)),
    )
    _save(report)
    return report
