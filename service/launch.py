"""Start a server in the background and stop it within a bounded time, whatever it does.

Used by the tests and benchmarks that run the semqa service, the MLflow server or the
dashboard on loopback. Two things make a plain ``Popen(...).terminate()`` hang or leak:

* BentoML's process manager (circus) starts every worker in a session of its own
  (``os.setsid``), so signalling the server's process group misses the workers, and a worker
  that ignores SIGTERM, or whose manager was killed first, keeps running (and its port open);
* output sent to a pipe nobody reads blocks the server once the pipe's buffer is full,
  which is why the output goes to a log file here.

:func:`stop_tree` therefore records the whole process tree before signalling it: SIGTERM
to the process group, a grace period for an orderly shutdown, then SIGKILL to every process
of the tree that is still there. Every wait in it is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import psutil

#: Seconds a server gets to shut down after SIGTERM: BentoML's arbiter gives its workers
#: 5 s (its STOP_TIMEOUT) and uvicorn drains open keep-alive connections first.
GRACE_S = 15.0
#: Seconds to wait for processes to vanish after SIGKILL (the kernel reaps them at once;
#: only an uninterruptible disk wait can delay it).
KILL_WAIT_S = 30.0

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def start_group(
    cmd: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start ``cmd`` in a new session (its own process group), output to ``log_path``.

    Parameters
    ----------
    cmd : sequence of str
        Command line.
    log_path : Path
        File receiving stdout and stderr (a file never blocks the writer as a full pipe does).
    env : mapping, optional
        Environment; default this process's.
    cwd : Path, optional
        Working directory.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:  # the child holds its own descriptor
        return subprocess.Popen(
            list(cmd), cwd=cwd, env=dict(os.environ if env is None else env),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal(procs: Sequence[psutil.Process], sig: int) -> None:
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            p.send_signal(sig)  # psutil checks the pid still names the same process


def stop_tree(proc: subprocess.Popen, grace_s: float = GRACE_S, kill_wait_s: float = KILL_WAIT_S) -> None:
    """Stop ``proc`` and all its descendants within ``grace_s + kill_wait_s`` seconds.

    SIGTERM goes to ``proc``'s process group and to every descendant (some run in sessions
    of their own); whatever is left after ``grace_s`` seconds gets SIGKILL. ``proc`` is reaped.
    """
    tree = _tree(proc.pid)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    _signal(tree[1:], signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=grace_s)
    # Workers a manager (re)started during the grace period are in the tree now.
    alive = list({p.pid: p for p in [*alive, *_tree(proc.pid)]}.values())
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    _signal(alive, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=kill_wait_s)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=kill_wait_s)


def service_command(port: int, *, host: str = "127.0.0.1", bento: str | None = None) -> list[str]:
    """``semqa service serve`` of this checkout (or of ``bento``) as a command line."""
    cmd = [sys.executable, "-m", "semqa.cli", "service", "serve", "--host", host, "--port", str(port)]
    return [*cmd, "--bento", bento] if bento else cmd


@contextlib.contextmanager
def running_service(
    port: int,
    *,
    log_path: Path,
    token: str | None = None,
    env: Mapping[str, str] | None = None,
    bento: str | None = None,
    ready_timeout_s: float = 240.0,
) -> Iterator[str]:
    """Serve the semqa service on 127.0.0.1:``port`` in the background; yields its URL.

    Waits at most ``ready_timeout_s`` for ``/readyz`` (failing early if the server exits) and
    stops the server with :func:`stop_tree` on leaving, also when the wait fails.
    """
    from service.client import SemqaClient

    env = dict(os.environ if env is None else env)
    # The checkout first on the path, as `python -m semqa.cli` from its root would have it.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    proc = start_group(service_command(port, bento=bento), log_path=log_path, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        with SemqaClient(url, token=token or env.get("SEMQA_API_TOKEN")) as client:
            try:
                client.wait_ready(ready_timeout_s, alive=lambda: proc.poll() is None)
            except (TimeoutError, RuntimeError) as exc:
                tail = log_path.read_text(errors="replace")[-3000:] if log_path.is_file() else ""
                raise RuntimeError(f"{exc}; server log:\n{tail}") from None
        yield url
    finally:
        stop_tree(proc)
