"""Lineage: from a result (or a model version) back to data, validation and code.

The chain an auditor follows, each link checked rather than just read:

result → input images (re-hashed; a changed digest breaks the chain) → generator
name/version and the alias it was resolved through (confirmed against the audit trail at
the result's time), and the same for a learned segmenter (:func:`check_segmenter`) → weights (re-hashed from the registry's artifact) → training run
(params, metrics) → training data set digest and its validation report (artifact; its
digest must equal the run's) → code commit; and the result file itself against its record
(:mod:`semqa.registry.records`: the run holding its content digest), so an edited number,
a removed field or a nulled model link breaks the chain and is named.

Every link is a :class:`LineageLink`; :class:`LineageReport` prints them as text. Where a
link is missing or a digest no longer matches, :func:`trace_result` and
:func:`trace_version` raise :class:`LineageBroken` (a :class:`~semqa.errors.CheckFailed`,
CLI exit 1) carrying the whole report, so the reader sees what did and did not hold.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from semqa.errors import CheckFailed, InputError
from semqa.io.digests import file_digest
from semqa.components import WEIGHTS_FILE
from semqa.sr.inference import TAG_WEIGHTS_ARTIFACT, TAG_WEIGHTS_DIGEST
from semqa.registry.promotion import TAG_EVAL_PREFIX
from semqa.registry.records import check_record
from semqa.registry.store import MODEL_NAME, configure_tracking, mask_credentials
from semqa.results import Lineage, SegmenterRef

#: Training-run tags and artifacts lineage follows (written by training and validation).
RUN_TAG_DATASET_DIGEST = "semqa.dataset_digest"
RUN_TAG_VALIDATION = "validation.success"
RUN_TAG_CODE_VERSION = "semqa.code_version"
RUN_TAG_GIT_COMMIT = "mlflow.source.git.commit"
VALIDATION_REPORT_ARTIFACT = "validation/report.json"


class LineageLink(BaseModel):
    """One link of the chain and whether it holds."""

    step: str = Field(description="result | record | input | model | alias | weights | training_run | dataset | validation_report | code | evaluation | audit | segmenter | segmenter_<step>")
    ok: bool
    summary: str = Field(description="one line for the text report")
    details: dict[str, Any] = Field(default_factory=dict)


class LineageReport(BaseModel):
    """The chain behind a result or a model version."""

    subject: str
    links: list[LineageLink] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every link holds."""
        return all(link.ok for link in self.links)

    @property
    def broken(self) -> list[LineageLink]:
        """The links that do not hold."""
        return [link for link in self.links if not link.ok]

    def add(self, step: str, ok: bool, summary: str, **details: Any) -> LineageLink:
        link = LineageLink(step=step, ok=ok, summary=summary, details=details)
        self.links.append(link)
        return link

    def text(self) -> str:
        """The chain as readable lines: ``[ok]``/``[BROKEN]``, step, summary."""
        lines = [f"Lineage of {self.subject}"]
        for link in self.links:
            lines.append(f"  [{'ok' if link.ok else 'BROKEN'}] {link.step:<18} {link.summary}")
            if link.step == "training_run":
                for kind in ("params", "metrics"):
                    values = link.details.get(kind) or {}
                    if values:
                        shown = ", ".join(f"{k}={_short(v)}" for k, v in sorted(values.items())[:12])
                        more = f", … ({len(values)} in all)" if len(values) > 12 else ""
                        lines.append(f"  {'':6} {'':<18}   {kind}: {shown}{more}")
        lines.append(f"Chain {'intact' if self.ok else 'BROKEN at: ' + ', '.join(link.step for link in self.broken)}")
        return "\n".join(lines)


class LineageBroken(CheckFailed):
    """A link of the chain is missing or a digest no longer matches; ``report`` has the chain."""

    def __init__(self, report: LineageReport) -> None:
        first = report.broken[0]
        super().__init__(f"lineage of {report.subject} broken at {first.step}: {first.summary}")
        self.report = report


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _client() -> Any:
    import mlflow

    configure_tracking()
    return mlflow.MlflowClient()


# --- inputs ------------------------------------------------------------------------------


def _candidates(name: str, recorded: str | None, roots: list[Path]) -> list[Path]:
    found: list[Path] = []
    if recorded and Path(recorded).is_file():
        found.append(Path(recorded))
    for root in roots:
        direct = root / name
        if direct.is_file():
            found.append(direct)
        found.extend(p for p in root.rglob(Path(name).name) if p.is_file())
    return list(dict.fromkeys(p.resolve() for p in found))


def check_inputs(report: LineageReport, lineage: Lineage, image_roots: list[Path]) -> None:
    """Re-hash every input image; a missing file or a changed digest breaks the chain."""
    if not lineage.input_digests:
        report.add("input", False, "the result records no input image digests")
        return
    for name, digest in sorted(lineage.input_digests.items()):
        recorded = lineage.input_paths.get(name)
        files = _candidates(name, recorded, image_roots)
        if not files:
            where = f"recorded path {recorded} is gone" if recorded else "no path recorded"
            report.add("input", False, f"{name}: file not found ({where}; give the image folders)", name=name, digest=digest)
            continue
        digests = {str(p): file_digest(p) for p in files}
        match = next((p for p, d in digests.items() if d == digest), None)
        if match is None:
            path, now = next(iter(digests.items()))
            report.add("input", False, f"{name}: digest changed at {path} (recorded {digest[:19]}…, now {now[:19]}…)", name=name, path=path, recorded=digest, now=now)
        else:
            report.add("input", True, f"{name}: {digest[:19]}… matches {match}", name=name, path=match, digest=digest)


# --- model, run, data, code --------------------------------------------------------------


def _alias_at(client: Any, name: str, alias: str, at: datetime) -> str | None:
    """Version that held ``alias`` at time ``at`` according to the audit trail, if recorded."""
    from semqa.registry.audit import read_audit

    holder = None
    for entry in read_audit(client, name):
        if entry.alias == alias and entry.timestamp <= at:
            holder = entry.version
    return holder


def _weights_digest_now(client: Any, run_id: str, artifact: str) -> str:
    import mlflow

    with tempfile.TemporaryDirectory(prefix="semqa-lineage-") as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{artifact}/{WEIGHTS_FILE}", dst_path=tmp)
        return file_digest(local)


def _validation_report(client: Any, run_id: str) -> dict[str, Any] | None:
    import mlflow
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="semqa-lineage-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=VALIDATION_REPORT_ARTIFACT, dst_path=tmp)
        except (MlflowException, OSError):
            return None
        return json.loads(Path(local).read_text())


def check_model(
    report: LineageReport,
    client: Any,
    name: str,
    version: str,
    *,
    run_id: str | None = None,
    weights_digest: str | None = None,
    alias: str | None = None,
    at: datetime | None = None,
) -> None:
    """Model version → weights → training run → data set and validation report → code."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(name, version)
    except MlflowException:
        report.add("model", False, f"{name} version {version} is not in the registry at {mask_credentials(client.tracking_uri)}")
        return
    aliases = [a for a, v in client.get_registered_model(name).aliases.items() if str(v) == str(mv.version)]
    report.add(
        "model",
        run_id is None or run_id == mv.run_id,
        f"{name} v{mv.version} (aliases now: {', '.join(aliases) or 'none'}), training run {mv.run_id}"
        + ("" if run_id is None or run_id == mv.run_id else f" but the result names run {run_id}"),
        name=name,
        version=str(mv.version),
        run_id=mv.run_id,
        aliases_now=aliases,
        source=mv.source,
    )
    if alias is not None and at is not None:
        holder = _alias_at(client, name, alias, at)
        if holder is None:
            report.add("alias", True, f"resolved through '{alias}'; no audit entry before {at:%Y-%m-%d %H:%M:%S} UTC to confirm it", alias=alias)
        else:
            report.add(
                "alias",
                holder == str(mv.version),
                f"'{alias}' held v{holder} at {at:%Y-%m-%d %H:%M:%S} UTC per the audit trail"
                + ("" if holder == str(mv.version) else f", not v{mv.version}"),
                alias=alias,
                holder=holder,
            )
    registered = mv.tags.get(TAG_WEIGHTS_DIGEST)
    artifact = mv.tags.get(TAG_WEIGHTS_ARTIFACT)
    if not registered or not artifact or not mv.run_id:
        report.add("weights", False, f"v{mv.version} records no {TAG_WEIGHTS_DIGEST}/{TAG_WEIGHTS_ARTIFACT} tags")
    else:
        try:
            now = _weights_digest_now(client, mv.run_id, artifact)
        except (MlflowException, OSError) as exc:
            report.add("weights", False, f"weights artifact {artifact}/{WEIGHTS_FILE} unreadable: {str(exc).splitlines()[0]}")
        else:
            ok = now == registered and (weights_digest is None or weights_digest == registered)
            detail = f"weights {registered[:19]}… re-hashed from the artifact: " + ("match" if now == registered else f"NOW {now[:19]}…")
            if weights_digest is not None and weights_digest != registered:
                detail += f"; the result used {weights_digest[:19]}…"
            report.add("weights", ok, detail, registered=registered, now=now, result=weights_digest)
    if not mv.run_id:
        report.add("training_run", False, f"v{mv.version} names no training run")
        return
    check_training_run(report, client, mv.run_id)


def check_training_run(report: LineageReport, client: Any, run_id: str) -> None:
    """Training run (params, metrics) → data set digest → validation report → code version."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        report.add("training_run", False, f"training run {run_id} not found")
        return
    tags = run.data.tags
    report.add(
        "training_run",
        True,
        f"{run_id} '{run.info.run_name}' in experiment {run.info.experiment_id}, {run.info.status}",
        run_id=run_id,
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
    )
    digest = tags.get(RUN_TAG_DATASET_DIGEST)
    inputs = [
        {"name": d.dataset.name, "digest": d.dataset.digest, "source": d.dataset.source}
        for d in (run.inputs.dataset_inputs if run.inputs else [])
    ]
    if digest is None:
        report.add("dataset", False, f"training run records no data set digest (tag {RUN_TAG_DATASET_DIGEST})", mlflow_inputs=inputs)
    else:
        report.add("dataset", True, f"training data {digest}" + (f" ({len(inputs)} MLflow dataset input(s))" if inputs else ""), digest=digest, mlflow_inputs=inputs)
    validation = _validation_report(client, run_id)
    if validation is None:
        report.add("validation_report", False, f"training run has no {VALIDATION_REPORT_ARTIFACT} artifact")
    else:
        same = validation.get("dataset_digest") == digest
        outcome = "passed" if validation.get("success") else "FAILED"
        report.add(
            "validation_report",
            same,
            f"{VALIDATION_REPORT_ARTIFACT}: data validation {outcome}, "
            + ("same data set digest" if same else f"digest {validation.get('dataset_digest')} differs from the run's"),
            success=validation.get("success"),
            dataset_digest=validation.get("dataset_digest"),
            failures=validation.get("failures"),
            tag_validation_success=tags.get(RUN_TAG_VALIDATION),
        )
    code = tags.get(RUN_TAG_CODE_VERSION) or (f"git:{tags[RUN_TAG_GIT_COMMIT]}" if RUN_TAG_GIT_COMMIT in tags else None)
    if code is None:
        report.add("code", False, "training run records no code version")
    else:
        report.add("code", True, f"training code {code}" + (" (uncommitted changes)" if code.endswith("+dirty") else ""), code_version=code)


def check_segmenter(report: LineageReport, client: Any, segmenter: SegmenterRef, at: datetime | None) -> None:
    """The segmenter link: the classic pipeline (part of the code), or a registered learned version.

    A learned segmenter is followed as the generator is (:func:`check_model`: version, alias
    at the result's time, weights re-hashed, training run, data, code); its links are named
    ``segmenter``, ``segmenter_alias``, ``segmenter_weights``, … A learned segmenter that is
    not a registered version (a folder) breaks the chain: nothing in the registry vouches for it.
    """
    if segmenter.kind == "classic":
        report.add("segmenter", True, "classic pipeline (semqa.particles.segmentation), part of the result's code version", kind="classic")
        return
    if segmenter.name is None or segmenter.version is None:
        report.add("segmenter", False, f"learned segmenter from {segmenter.model_uri} is not a registered version", kind=segmenter.kind)
        return
    own = LineageReport(subject=report.subject)
    check_model(own, client, segmenter.name, segmenter.version, run_id=segmenter.run_id,
                weights_digest=segmenter.weights_digest, alias=segmenter.alias, at=at)
    for link in own.links:
        step = "segmenter" if link.step == "model" else f"segmenter_{link.step}"
        report.links.append(link.model_copy(update={"step": step}))


# --- entry points ------------------------------------------------------------------------


#: Largest result file read (bytes). A result holds ~0.7 kB of JSON per particle, so this
#: is room for ~350 000 particles: far beyond any analysis, far below what exhausts memory.
MAX_RESULT_BYTES = 256 * 2**20
#: Deepest nesting accepted. semqa results nest under ten levels (comparison → lot → psd →
#: histogram); a deeper document is not a semqa result.
MAX_RESULT_DEPTH = 64


def _depth(document: Any) -> int:
    """Nesting depth of a JSON document, walked without recursion."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def _read_document(path: Path) -> dict[str, Any]:
    """A result file as a JSON object: a regular file, bounded in size and nesting."""
    import stat

    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError(f"no such result file: {path}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        # A FIFO or device would block or never end: only regular files are results.
        raise InputError(f"{path}: not a regular file")
    if info.st_size > MAX_RESULT_BYTES:
        raise InputError(f"{path}: {info.st_size} bytes, larger than any result ({MAX_RESULT_BYTES} bytes at most)")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_RESULT_BYTES + 1)
        if len(raw) > MAX_RESULT_BYTES:
            raise InputError(f"{path}: larger than any result ({MAX_RESULT_BYTES} bytes at most)")
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise InputError(f"{path}: not a result (JSON nested deeper than {MAX_RESULT_DEPTH} levels)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a JSON result ({exc})") from None
    if _depth(data) > MAX_RESULT_DEPTH:
        raise InputError(f"{path}: not a result (JSON nested deeper than {MAX_RESULT_DEPTH} levels)")
    if not isinstance(data, dict) or "lineage" not in data:
        raise CheckFailed(f"{path}: the result carries no lineage section")
    return data


def _load_lineage(path: Path) -> tuple[dict[str, Any], Lineage]:
    data = _read_document(path)
    try:
        return data, Lineage.model_validate(data["lineage"])
    except ValidationError as exc:
        raise CheckFailed(f"{path}: lineage section invalid ({exc.errors()[0]['loc']}: {exc.errors()[0]['msg']})") from None


def trace_result(result_json_path: str | Path, image_roots: list[str | Path] | None = None) -> LineageReport:
    """The chain behind a result JSON (``semqa analyze`` / ``compare`` output).

    Parameters
    ----------
    result_json_path
        A JSON document with a ``lineage`` section (:class:`semqa.results.Lineage`).
    image_roots
        Folders to look for the input images in (searched recursively by file name), in
        addition to the paths the result recorded.

    Raises
    ------
    LineageBroken
        An input is missing or changed, a registry, run, data or code link is missing, or the
        file differs from its record (:func:`semqa.registry.records.check_record`).
    InputError
        The file is missing, not a regular file, too large, too deeply nested or not JSON.
    """
    path = Path(result_json_path)
    document, lineage = _load_lineage(path)
    report = LineageReport(subject=f"result {path}")
    if "created_at" not in document["lineage"]:
        report.add("result", False, "the result records no creation time (lineage.created_at removed)")
    else:
        report.add(
            "result",
            True,
            f"created {lineage.created_at:%Y-%m-%d %H:%M:%S} UTC by semqa {lineage.semqa_version}, code {lineage.code_version}",
            created_at=lineage.created_at.isoformat(),
            code_version=lineage.code_version,
        )
    check_inputs(report, lineage, [Path(r) for r in image_roots or []])
    model = lineage.model
    if model is None and document.get("sr") is not False:
        # A super-resolved result (or one that does not say) must name its generator.
        report.add("model", False, f"the result says sr: {json.dumps(document.get('sr'))} but names no generator (lineage.model is null)")
    elif model is None:
        report.add("model", True, "analysed without super-resolution: no model in the chain")
    elif model.version is None:
        report.add("model", False, f"generator {model.name} from {model.model_uri} is not a registered version")
    else:
        check_model(
            report,
            _client(),
            model.name,
            model.version,
            run_id=model.run_id,
            weights_digest=model.weights_digest,
            alias=model.alias,
            at=lineage.created_at,
        )
    check_segmenter(report, _client(), lineage.segmenter, lineage.created_at)
    ok, summary, details = check_record(document)
    report.add("record", ok, summary, **details)
    if not report.ok:
        raise LineageBroken(report)
    return report


def trace_version(version: str | int, name: str = MODEL_NAME) -> LineageReport:
    """The chain behind a registered generator version, with its gate evaluations and audit.

    Raises
    ------
    LineageBroken
        A registry, weights, run, data or code link is missing or a digest differs.
    """
    from semqa.registry.audit import read_audit

    client = _client()
    report = LineageReport(subject=f"{name} version {version}")
    check_model(report, client, name, str(version))
    if report.links and report.links[0].ok:
        mv = client.get_model_version(name, str(version))
        for key, run_id in sorted(mv.tags.items()):
            if key.startswith(TAG_EVAL_PREFIX):
                metrics = client.get_run(run_id).data.metrics
                shown = ", ".join(f"{k}={metrics[k]:.4g}" for k in ("psnr", "bicubic_psnr", "d50_rel_error", "wasserstein", "precision") if k in metrics)
                report.add("evaluation", True, f"gate evaluation run {run_id}: {shown}", run_id=run_id, metrics=metrics)
        for entry in read_audit(client, name):
            if entry.version == str(version) or entry.from_version == str(version):
                report.add(
                    "audit",
                    True,
                    f"{entry.timestamp:%Y-%m-%d %H:%M:%S} {entry.user} {entry.action} {entry.alias} "
                    f"v{entry.from_version or '-'}→v{entry.version}{' FORCED' if entry.forced else ''}: {entry.reason}",
                    entry=entry.model_dump(mode="json"),
                )
    if not report.ok:
        raise LineageBroken(report)
    return report
