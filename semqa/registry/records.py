"""Tamper-evident records of results: one MLflow run per ``analyze`` / ``compare`` result.

A result file is only as trustworthy as what vouches for it. :func:`record_result` writes, into
the configured tracking store (:mod:`semqa.registry.store`: the embedded SQLite store offline,
or the team server), a run in the ``semqa-results`` experiment holding

- the result's content digest: sha256 of its canonical JSON (:func:`canonical_json`: keys
  sorted, no whitespace, UTF-8) with the record pointer ``lineage.record`` left out;
- a copy of that canonical JSON (artifact ``result/result.json``), so a check can say *which*
  field differs, not only that one does;
- the inputs (count and a digest over the input image digests) and the generator's name,
  version and weights digest as tags, to find the runs behind a model version.

On the embedded SQLite store the run is written by :mod:`semqa.registry.sqlite_record`
(the rows MLflow's client would write, without the ~3 s of importing it); on any other store,
or a schema that writer was not checked against, by MLflow's client (:func:`record_with_mlflow`).

The result then carries the pointer (:class:`semqa.results.ResultRecord`: run id, digest,
masked store URI); :func:`check_record` compares a result file with its run. Any edited
number, removed or added field, or changed model link changes the digest and is named.

What this protects against: a result file edited after the fact, by hand or by a tool.
Whoever can write the store itself (the SQLite file of a personal store, an MLflow user with
EDIT permission on the experiment of a team server) could change the record too; on a team
server, give analysts permission to create runs but keep the store's database and artifact
destination out of their reach (docs/server.md).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from semqa.errors import SemqaError
from semqa.registry.sqlite_record import write_record
from semqa.registry.store import (
    configure_tracking,
    ensure_experiment,
    mask_credentials,
    shown_tracking_uri,
    tracking_uri,
)
from semqa.results import ResultRecord

#: MLflow experiment holding one run per recorded result.
RESULTS_EXPERIMENT = "semqa-results"
#: Run tags of a result record.
TAG_RESULT_DIGEST = "semqa.result_digest"
TAG_RESULT_KIND = "semqa.result_kind"
TAG_INPUTS_DIGEST = "semqa.inputs_digest"
TAG_N_INPUTS = "semqa.n_inputs"
TAG_MODEL_NAME = "semqa.model_name"
TAG_MODEL_VERSION = "semqa.model_version"
TAG_WEIGHTS_DIGEST = "semqa.weights_digest"
TAG_CREATED_AT = "semqa.created_at"
#: Artifact path of the recorded canonical JSON.
RESULT_ARTIFACT_DIR = "result"
RESULT_ARTIFACT_FILE = "result.json"

#: Differences named in a message before "… (N in all)".
_MAX_NAMED = 8

# One process records one result at a time: SQLite takes one writer, and the service records
# from worker threads.
_LOCK = threading.Lock()

R = TypeVar("R", bound=BaseModel)


class RecordError(SemqaError):
    """A result could not be recorded in the tracking store (CLI exit 1; the service answers 503)."""

    http_status = 503


def canonical_json(document: Any) -> bytes:
    """The canonical bytes of a JSON document: keys sorted, no insignificant whitespace, UTF-8.

    Floats are written as Python's shortest round-tripping repr, so a document read back from
    any JSON text of the same numbers gives the same bytes. NaN and infinities are refused
    (pydantic already writes them as ``null``).
    """
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


#: Top-level keys a result's producer may add beside the result without being part of it:
#: the service's ``overlays`` (base64 PNG pictures of the result, drawn from its particles).
#: They are left out of the digest, and :func:`check_record` says they are not covered.
ATTACHMENTS = ("overlays",)


def _vouched(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` without ``lineage.record`` (the pointer cannot be part of what it points at)
    and without the :data:`ATTACHMENTS` beside the result."""
    out = {k: v for k, v in document.items() if k not in ATTACHMENTS}
    lineage = out.get("lineage")
    if isinstance(lineage, dict):
        out["lineage"] = {k: v for k, v in lineage.items() if k != "record"}
    return out


def content_digest(document: dict[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of a result document minus ``lineage.record`` and attachments."""
    return "sha256:" + hashlib.sha256(canonical_json(_vouched(document))).hexdigest()


def result_document(result: BaseModel) -> dict[str, Any]:
    """A result model as the JSON document its file holds (what ``model_dump_json`` writes, parsed)."""
    return json.loads(result.model_dump_json())


def _tags(document: dict[str, Any], digest: str, kind: str) -> dict[str, str]:
    lineage = document.get("lineage") or {}
    inputs = lineage.get("input_digests") or {}
    tags = {
        TAG_RESULT_DIGEST: digest,
        TAG_RESULT_KIND: kind,
        TAG_N_INPUTS: str(len(inputs)),
        TAG_INPUTS_DIGEST: "sha256:" + hashlib.sha256(canonical_json(inputs)).hexdigest(),
        TAG_CREATED_AT: str(lineage.get("created_at")),
    }
    model = lineage.get("model")
    if model:
        tags.update({TAG_MODEL_NAME: str(model.get("name")), TAG_MODEL_VERSION: str(model.get("version")),
                     TAG_WEIGHTS_DIGEST: str(model.get("weights_digest"))})
    return tags


def record_result(result: R) -> R:
    """Record ``result`` (an analysis or comparison) in the tracking store; returns it with its pointer.

    The one recording function the CLI, the service and the dashboard call before a result
    leaves them. The returned copy's ``lineage.record`` names the run.

    Raises
    ------
    RecordError
        The store refused or could not be reached; the message names the store, masked.
    """
    document = result_document(result)
    digest = content_digest(document)
    kind = "comparison" if "verdict" in document else "analysis"
    text = canonical_json(_vouched(document)).decode("utf-8")
    run_name, tags = f"{kind}-{digest[7:19]}", _tags(document, digest, kind)
    artifact = f"{RESULT_ARTIFACT_DIR}/{RESULT_ARTIFACT_FILE}"
    uri = tracking_uri()
    try:
        with _LOCK:
            run_id = None
            if uri.startswith("sqlite:///"):
                # The embedded store: written without importing MLflow (semqa.registry.sqlite_record).
                run_id = write_record(Path(uri.removeprefix("sqlite:///")), RESULTS_EXPERIMENT, run_name, tags, artifact, text)
            if run_id is None:
                run_id = record_with_mlflow(run_name, tags, artifact, text)
    except (sqlite3.Error, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RecordError(f"result not recorded in the tracking store {shown_tracking_uri()}: {mask_credentials(first)}") from None
    pointer = ResultRecord(run_id=run_id, digest=digest, store=shown_tracking_uri())
    lineage = getattr(result, "lineage")
    return result.model_copy(update={"lineage": lineage.model_copy(update={"record": pointer})})


def record_with_mlflow(run_name: str, tags: dict[str, str], artifact_path: str, text: str) -> str:
    """Record one finished run through MLflow's client (any store; creates the experiment); returns its id.

    Raises
    ------
    RecordError
        MLflow refused or could not reach the store; the message names the store, masked.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        configure_tracking()
        client = mlflow.MlflowClient()
        experiment_id = ensure_experiment(client, RESULTS_EXPERIMENT)
        run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        client.log_text(run_id, text, artifact_path)
        client.set_terminated(run_id)
    except (MlflowException, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RecordError(f"result not recorded in the tracking store {shown_tracking_uri()}: {mask_credentials(first)}") from None
    return run_id


# --- checking ----------------------------------------------------------------------------


def differences(recorded: Any, current: Any, path: str = "") -> list[str]:
    """Where two JSON documents differ, as readable paths: ``psd.d50_um changed (2.09 → 2.5)``.

    Walked with an explicit stack, so a deeply nested document cannot exhaust the recursion limit.
    """
    out: list[str] = []
    stack: list[tuple[str, Any, Any]] = [(path, recorded, current)]
    while stack:
        where, a, b = stack.pop()
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), reverse=True):
                sub = f"{where}.{key}" if where else str(key)
                if key not in b:
                    out.append(f"{sub} removed")
                elif key not in a:
                    out.append(f"{sub} added")
                else:
                    stack.append((sub, a[key], b[key]))
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                out.append(f"{where or 'document'} has {len(b)} entries, recorded {len(a)}")
            for i in reversed(range(min(len(a), len(b)))):
                stack.append((f"{where}[{i}]", a[i], b[i]))
        elif a != b or type(a) is not type(b):
            out.append(f"{where or 'document'} changed ({_shown(a)} → {_shown(b)})")
    return out


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "…"


def _recorded_document(run_id: str) -> Any:
    import mlflow

    with tempfile.TemporaryDirectory(prefix="semqa-record-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{RESULT_ARTIFACT_DIR}/{RESULT_ARTIFACT_FILE}", dst_path=tmp
        )
        return json.loads(Path(local).read_text(encoding="utf-8"))


def check_record(document: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
    """Compare a result document with its recorded run: (holds, one-line summary, details).

    The chain holds only when the document names a run in the configured store whose digest
    equals the document's own content digest; otherwise the summary says what differs
    (fields, from the recorded copy) or what is missing.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    lineage = document.get("lineage") if isinstance(document.get("lineage"), dict) else {}
    pointer = lineage.get("record")
    now = content_digest(document)
    store = shown_tracking_uri()
    if not isinstance(pointer, dict) or not pointer.get("run_id"):
        return False, "the result names no record (lineage.record): nothing vouches for its content", {"digest": now}
    run_id = str(pointer["run_id"])
    where = f" (it was recorded in {pointer.get('store')})" if pointer.get("store") != store else ""
    configure_tracking()
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        return False, f"record run {run_id} not found in the store {store}{where}", {"run_id": run_id, "store": store}
    recorded = run.data.tags.get(TAG_RESULT_DIGEST)
    details = {"run_id": run_id, "store": store, "recorded_digest": recorded, "digest": now}
    if recorded is None:
        return False, f"run {run_id} is not a semqa result record (no {TAG_RESULT_DIGEST} tag)", details
    if recorded == now:
        attached = document.get("overlays")
        note = (f"; {len(attached)} overlay image(s) beside the result are not covered by the record"
                if isinstance(attached, dict) and attached else "")
        return True, f"content digest {now[:19]}… matches record run {run_id}{note}", details
    try:
        copy = _recorded_document(run_id)
    except (MlflowException, OSError, ValueError) as exc:
        first = mask_credentials(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return False, f"content digest {now[:19]}… differs from the record's {recorded[:19]}…; recorded copy unreadable: {first}", details
    if content_digest(copy) != recorded:
        return False, f"content digest {now[:19]}… differs from the record's {recorded[:19]}…, and the recorded copy was altered too", details
    diffs = differences(copy, _vouched(document))
    details["differences"] = diffs
    shown = "; ".join(diffs[:_MAX_NAMED]) + (f"; … ({len(diffs)} in all)" if len(diffs) > _MAX_NAMED else "")
    return False, f"differs from record run {run_id}: {shown or 'content digest differs'}", details
