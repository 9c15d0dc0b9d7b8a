"""Append-only audit trail of registry actions, kept in the MLflow Model Registry itself.

Every promotion, rollback and forced gate becomes one :class:`AuditEntry`, written as a
model-version tag ``audit.<UTC timestamp>`` holding the entry as JSON on the version that
received the alias. Keys are never overwritten: a key that already exists is a collision
and the entry is written under the next free key, so the registry's tag history is the
record: 21 CFR 11.10(e) asks for secure, computer-generated, time-stamped audit trails
whose changes do not obscure earlier entries; the registry database is where the team
already keeps its models.
:func:`read_audit` collects the entries of all versions, oldest first, and
:func:`export_audit` writes them as CSV or JSON for auditors.
"""

from __future__ import annotations

import getpass
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field

from semqa.errors import InputError
from semqa.registry.store import MODEL_NAME

#: Prefix of the model-version tags that hold audit entries.
AUDIT_TAG_PREFIX = "audit."

AuditAction = Literal["promote", "rollback"]


class GateCheck(BaseModel):
    """One gate limit evaluated for one version."""

    name: str = Field(description="gate id, e.g. 'd50_rel_error'")
    passed: bool
    value: float | str | None = Field(None, description="measured value (or the tag read)")
    limit: float | str | None = Field(None, description="the limit it is held against")
    detail: str = Field(description="one line a reviewer can read: value, comparison, limit")


class AuditEntry(BaseModel):
    """One registry action: who moved which alias from which version to which, and why."""

    action: AuditAction
    model_name: str = MODEL_NAME
    alias: str = Field(description="alias that moved: staging | production")
    version: str = Field(description="version that received the alias")
    from_version: str | None = Field(None, description="version that held the alias before")
    archived_version: str | None = Field(None, description="version that received 'archived'")
    user: str
    timestamp: datetime
    reason: str
    forced: bool = False
    gates_passed: bool | None = Field(None, description="None where no gates apply (rollback)")
    gates: list[GateCheck] = Field(default_factory=list)
    eval_run_id: str | None = None
    eval_set_digest: str | None = None
    tag_key: str | None = Field(None, description="registry tag the entry is stored under")


def current_user() -> str:
    """The acting user: the MLflow server username where one is set, else the OS login."""
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser()


def utc_now() -> datetime:
    """Now, in UTC (audit timestamps are never local time)."""
    return datetime.now(timezone.utc)


def _tag_key(timestamp: datetime, attempt: int) -> str:
    key = f"{AUDIT_TAG_PREFIX}{timestamp.strftime('%Y%m%dT%H%M%S.%fZ')}"
    return key if attempt == 0 else f"{key}-{attempt}"


def append_audit_entry(client: Any, entry: AuditEntry) -> AuditEntry:
    """Write ``entry`` as a new tag on its version; never overwrite an existing entry.

    Parameters
    ----------
    client
        An ``mlflow.MlflowClient`` pointed at the registry.
    entry
        The entry; its ``tag_key`` is filled in.

    Returns
    -------
    AuditEntry
        The entry as stored, with ``tag_key`` set.
    """
    existing = client.get_model_version(entry.model_name, entry.version).tags
    attempt = 0
    while _tag_key(entry.timestamp, attempt) in existing:
        attempt += 1
    stored = entry.model_copy(update={"tag_key": _tag_key(entry.timestamp, attempt)})
    client.set_model_version_tag(
        entry.model_name, entry.version, stored.tag_key, stored.model_dump_json(exclude={"tag_key"})
    )
    return stored


def read_audit(client: Any = None, model_name: str = MODEL_NAME) -> list[AuditEntry]:
    """All audit entries of ``model_name``, oldest first (``client`` default: the configured registry).

    Raises
    ------
    InputError
        If the model is not registered.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from semqa.registry.store import configure_tracking

    if client is None:
        configure_tracking()
        client = mlflow.MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except MlflowException as exc:
        raise InputError(f"cannot read the registry for {model_name!r}: {exc.message}") from exc
    entries = [
        AuditEntry.model_validate_json(value).model_copy(update={"tag_key": key})
        for mv in versions
        for key, value in mv.tags.items()
        if key.startswith(AUDIT_TAG_PREFIX)
    ]
    return sorted(entries, key=lambda e: (e.timestamp, e.tag_key or ""))


def audit_table(entries: list[AuditEntry]) -> pd.DataFrame:
    """Entries as a flat table, one row per action; gate results as one readable column."""
    rows = []
    for e in entries:
        row = e.model_dump(mode="json", exclude={"gates"})
        row["failed_gates"] = "; ".join(g.detail for g in e.gates if not g.passed)
        row["gates"] = json.dumps([g.model_dump(mode="json") for g in e.gates])
        rows.append(row)
    columns = list(AuditEntry.model_fields) + ["failed_gates"]
    return pd.DataFrame(rows, columns=columns)


def export_audit(entries: list[AuditEntry], fmt: Literal["csv", "json"], out: Path | None = None) -> str:
    """Render the audit trail as CSV or JSON; write it to ``out`` when given.

    Returns
    -------
    str
        The rendered text.
    """
    if fmt == "csv":
        text = audit_table(entries).to_csv(index=False)
    elif fmt == "json":
        text = json.dumps([e.model_dump(mode="json") for e in entries], indent=2) + "\n"
    else:
        raise InputError(f"unknown audit format {fmt!r}: use csv or json")
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
    return text
