"""Team server mode for real: PostgreSQL + ``mlflow server --app-name basic-auth`` on loopback.

The test starts a throwaway PostgreSQL cluster (Debian's ``postgresql``, installed by
``scripts/setup.sh --test``) and the MLflow server through ``scripts/start_mlflow_server.sh``
(the documented way), trains a tiny generator against it with ``training.train``, promotes
it as the admin, and checks that an unauthenticated user, a user with READ permission only
and a user with EDIT (who may not remove the staging alias) are refused promotion to
production while the aliases stay as they were.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import mlflow
import pytest

from registry_support import LOOSE_GATES
from semqa.cli import main
from semqa.evaluation import evaluate_model_uri as gate_evaluator
from semqa.registry.promotion import PromotionRefused, alias_holders, promote
from semqa.registry.store import MODEL_NAME
from semqa.synth.scenes import SynthConfig, make_pairs
from service.launch import start_group, stop_tree

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
ADMIN, ADMIN_PASSWORD = "admin", "admin-Pa55-for-tests"
READER, READER_PASSWORD = "reader", "reader-Pa55-for-tests"
EDITOR, EDITOR_PASSWORD = "editor", "editor-Pa55-for-tests"
#: In the backend store URI the start script is given; it must never reach a command line.
DB_PASSWORD = "db-Pa55-for-tests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin): install Debian's "
            "'postgresql' (scripts/setup.sh --test does) to run the team-server test"
        )
    return Path(found[-1]).parent


def _as_db_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the 'postgres' system user then."""
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root but there is no 'postgres' user to run PostgreSQL as (is Debian's postgresql installed?)")
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="module")
def postgres(request):
    """A PostgreSQL cluster in a temporary folder on a free loopback port; stopped at the end."""
    bin_dir = _pg_bin()
    folder = Path(tempfile.mkdtemp(prefix="semqa-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", _free_port()

    def stop() -> None:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_db_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)

    request.addfinalizer(stop)
    subprocess.run(
        _as_db_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
        check=True, capture_output=True, timeout=120,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run(
        _as_db_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start"]),
        check=True, capture_output=True, timeout=120,
    )
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE mlflow")
        cur.execute("CREATE DATABASE mlflow_auth")
    conn.close()
    return f"postgresql+psycopg2://postgres@127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory, request):
    """``scripts/start_mlflow_server.sh`` on a free loopback port; its process group is killed at the end."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = {
        **os.environ,
        # The test cluster trusts loopback, so any password connects; what matters is where it shows.
        "SEMQA_MLFLOW_DB": f"{postgres}/mlflow".replace("postgres@", f"postgres:{DB_PASSWORD}@", 1),
        "SEMQA_MLFLOW_AUTH_DB": f"{postgres}/mlflow_auth",
        "SEMQA_MLFLOW_ARTIFACTS": str(folder / "artifacts"),
        "SEMQA_MLFLOW_AUTH_CONFIG": str(folder / "auth.ini"),
        "SEMQA_MLFLOW_PORT": str(port),
        "SEMQA_MLFLOW_WORKERS": "1",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key-0123456789",
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW": str(Path(sys.executable).with_name("mlflow")),
        # MLflow's job runner (huey consumer processes, each importing mlflow) runs GenAI jobs
        # semqa never submits: not started here.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # Each request's scrypt password check costs ~0.14 s of CPU; the test's ~200 requests
        # check the same few credentials. Only successful checks are cached: the 401/403
        # refusals below go through the same checks as without the cache.
        "SEMQA_MLFLOW_AUTH_CACHE_TTL_S": "600",
    }
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(var, None)
    proc = start_group(["bash", str(ROOT / "scripts" / "start_mlflow_server.sh")], log_path=folder / "server.log",
                       env=env, cwd=folder)
    # Bounded: SIGTERM to the tree, then SIGKILL (uvicorn waits for open keep-alive connections).
    request.addfinalizer(lambda: stop_tree(proc))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}: {(folder / 'server.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    else:
        pytest.fail(f"mlflow server not up after 180 s: {(folder / 'server.log').read_text()[-3000:]}")
    return {"url": url, "folder": folder, "pgid": proc.pid}


def _as(monkeypatch, user: str | None, password: str | None) -> None:
    for var, value in (("MLFLOW_TRACKING_USERNAME", user), ("MLFLOW_TRACKING_PASSWORD", password)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)


def test_only_permitted_users_promote_on_the_team_server(server, tmp_path, monkeypatch) -> None:
    from mlflow.server import get_app_client

    from training.config import demo_config
    from training.train import train

    from registry_support import TINY

    url = server["url"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    _as(monkeypatch, ADMIN, ADMIN_PASSWORD)
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)

    # The server requires credentials: no password, no reading.
    assert httpx.get(f"{url}/api/2.0/mlflow/registered-models/search", timeout=10).status_code == 401

    pairs = make_pairs(tmp_path / "pairs", 3, SynthConfig(size_px=192), seed=1)
    eval_dir = make_pairs(tmp_path / "eval", 2, SynthConfig(size_px=192), seed=99)
    # Two steps: what is tested is training's bookkeeping on the server (run, validation,
    # registration), not the model's quality; every gate passes (LOOSE_GATES).
    config = demo_config(
        generator=TINY, pretrain_steps=2, gan_steps=0, batch_size=4, eval_every=1000,
        checkpoint_every=1000, max_val_images=1, checkpoint_dir=tmp_path / "ckpt",
    )
    result = train(config, pairs)
    assert result.model_version == "1"
    client = mlflow.MlflowClient()
    mv = client.get_model_version(MODEL_NAME, "1")
    assert mv.run_id == result.run_id and mv.tags["weights_digest"] == result.weights_digest
    assert client.get_run(result.run_id).data.tags["validation.success"] == "true"

    entry = promote("1", "staging", "first team build", evaluator=gate_evaluator, eval_data=eval_dir, config=LOOSE_GATES)
    assert entry.user == ADMIN and alias_holders(client) == {"staging": "1"}

    auth = get_app_client("basic-auth", tracking_uri=url)
    auth.create_user(READER, READER_PASSWORD)
    auth.grant_user_permission(READER, "registered_model", MODEL_NAME, "READ")
    assert auth.get_user_permission(READER, "registered_model", MODEL_NAME).permission == "READ"

    # A read-only user sees the registry but may not promote.
    _as(monkeypatch, READER, READER_PASSWORD)
    assert alias_holders(mlflow.MlflowClient()) == {"staging": "1"}
    with pytest.raises(PromotionRefused, match="refused by the registry for user 'reader'.*403"):
        promote("1", "production", "reader tries", evaluator=gate_evaluator, eval_data=eval_dir, config=LOOSE_GATES)
    assert main(["models", "rollback", "--reason", "reader tries"]) == 2

    # EDIT may stage but not release: moving staging to production removes an alias (MANAGE).
    _as(monkeypatch, ADMIN, ADMIN_PASSWORD)
    auth.create_user(EDITOR, EDITOR_PASSWORD)
    auth.grant_user_permission(EDITOR, "registered_model", MODEL_NAME, "EDIT")
    _as(monkeypatch, EDITOR, EDITOR_PASSWORD)
    with pytest.raises(PromotionRefused, match="user 'editor'.*403"):
        promote("1", "production", "editor tries", evaluator=gate_evaluator, eval_data=eval_dir, config=LOOSE_GATES)
    assert alias_holders(mlflow.MlflowClient()) == {"staging": "1"}

    # No credentials at all.
    _as(monkeypatch, None, None)
    with pytest.raises(PromotionRefused, match="401"):
        promote("1", "production", "anonymous tries", evaluator=gate_evaluator, eval_data=eval_dir, config=LOOSE_GATES)

    # Nothing moved; the admin can still promote, and the audit trail names who did what.
    _as(monkeypatch, ADMIN, ADMIN_PASSWORD)
    assert alias_holders(mlflow.MlflowClient()) == {"staging": "1"}
    entry = promote("1", "production", "released", evaluator=gate_evaluator, eval_data=eval_dir, config=LOOSE_GATES)
    assert alias_holders(mlflow.MlflowClient()) == {"production": "1"}
    from semqa.registry.audit import read_audit

    assert [(e.user, e.alias, e.reason) for e in read_audit()] == [
        (ADMIN, "staging", "first team build"),
        (ADMIN, "production", "released"),
    ]


def test_the_database_password_stays_off_command_lines(server) -> None:
    """``ps`` shows every user each process's command line: the start script keeps the password off them."""
    cmdlines = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != server["pgid"]:
                continue
            cmdlines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace"))
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue  # a process that ended while we looked
    assert any("mlflow" in line and "server" in line for line in cmdlines), cmdlines
    assert not [line for line in cmdlines if DB_PASSWORD in line]


def test_results_are_recorded_on_the_team_server_with_the_password_masked(server, tmp_path, monkeypatch, capsys) -> None:
    import json

    import numpy as np

    from semqa.io.images import write_image
    from semqa.synth.scenes import render_pair

    host = server["url"].removeprefix("http://")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://{ADMIN}:{ADMIN_PASSWORD}@{host}")
    _as(monkeypatch, None, None)  # the credentials travel in the URI, as a user may write it
    config = SynthConfig(size_px=256)
    hr, _, _ = render_pair(config, np.random.default_rng(3))
    write_image(tmp_path / "hr.tif", hr, pixel_size_um=config.pixel_size_um, bit_depth=16)
    out = tmp_path / "r.json"
    assert main(["analyze", str(tmp_path / "hr.tif"), "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert main(["lineage", str(out), "--json"]) == 0
    traced = capsys.readouterr()
    assert ADMIN_PASSWORD not in captured.out + captured.err + traced.out + traced.err + out.read_text()
    assert json.loads(out.read_text())["lineage"]["record"]["store"] == f"http://{ADMIN}:***@{host}"
    links = {link["step"]: link for link in json.loads(traced.out)["links"]}
    assert links["record"]["ok"] and links["record"]["details"]["store"] == f"http://{ADMIN}:***@{host}"
    data = json.loads(out.read_text())
    data["psd"]["d50_um"] *= 1.1
    out.write_text(json.dumps(data))
    assert main(["lineage", str(out)]) == 1
    captured = capsys.readouterr()
    assert "psd.d50_um changed" in captured.out and ADMIN_PASSWORD not in captured.out + captured.err
