"""The fixture machinery's servers (service.launch) never outlive the process that started them (issue 10).

The server stand-in is a real process tree shaped like BentoML's: a manager that ignores
SIGTERM and a worker in a session of its own that ignores it too (what circus' workers do),
so neither a process-group signal nor an orderly SIGTERM reaches or stops them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from service.launch import start_group, stop_tree

ROOT = Path(__file__).resolve().parent.parent
#: Upper bound on how long the tree may take to vanish: the guard's grace period plus margin
#: for a loaded machine.
VANISH_S = 90.0

#: A manager ignoring SIGTERM that starts a worker in its own session, also ignoring SIGTERM,
#: and writes both pids to argv[1].
STUBBORN_TREE = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
        start_new_session=True,
    )
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {worker.pid}")
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(600)
""")


def _wait_for(path: Path, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        assert time.monotonic() < deadline, f"{path} not written within {timeout_s} s"
        time.sleep(0.1)
    return path.read_text()


def _gone(pids: list[int], timeout_s: float) -> list[int]:
    """Pids among ``pids`` still running (not zombies) after waiting up to ``timeout_s``."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    deadline = time.monotonic() + timeout_s
    while True:
        alive = [p.pid for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


@pytest.mark.timeout(240)
def test_a_server_dies_with_its_sigkilled_parent(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    # The "test process": starts the stubborn tree through start_group, then waits to be killed.
    parent_code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from service.launch import start_group
        proc = start_group([sys.executable, "-c", {STUBBORN_TREE!r}, {str(pids_file)!r}], log_path=Path({str(tmp_path / 'server.log')!r}))
        Path({str(tmp_path / 'guard')!r}).write_text(str(proc.pid))
        time.sleep(600)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    parent = subprocess.Popen([sys.executable, "-c", parent_code], env=env, start_new_session=True)
    try:
        manager, worker = map(int, _wait_for(pids_file, 60).split())
        guard = int(_wait_for(tmp_path / "guard", 10))
        assert psutil.Process(worker).ppid() == manager
        assert os.getsid(worker) != os.getsid(manager)  # out of reach of a process-group signal
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        assert _gone([guard, manager, worker], VANISH_S) == []
    finally:
        # Whatever survived a failure must not outlive the test either.
        survivors = pids_file.read_text().split() if pids_file.is_file() else []
        for pid in [parent.pid, *map(int, survivors)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(240)
def test_stop_tree_stops_a_stubborn_tree_and_the_exit_status_is_the_servers(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    proc = start_group([sys.executable, "-c", STUBBORN_TREE, str(pids_file)], log_path=tmp_path / "server.log")
    manager, worker = map(int, _wait_for(pids_file, 60).split())
    stop_tree(proc)
    assert proc.returncode == 128 + signal.SIGTERM  # the guard's own status: it stopped on SIGTERM
    assert _gone([manager, worker], 10) == []  # stop_tree itself waited for them

    done = start_group([sys.executable, "-c", "import sys; print('served'); sys.exit(3)"], log_path=tmp_path / "exit.log")
    assert done.wait(timeout=60) == 3
    assert "served" in (tmp_path / "exit.log").read_text()
