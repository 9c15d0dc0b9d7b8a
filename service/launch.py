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

A test process that is itself killed (SIGKILL, an out-of-memory kill) runs none of that, so
:func:`start_group` does not start the server directly but under a guard, this module run as a
script: the guard asks Linux to signal it when its parent dies (``PR_SET_PDEATHSIG``) and to
adopt every orphaned descendant (``PR_SET_CHILD_SUBREAPER``, so workers in sessions of their
own stay in its tree when their manager dies), and when its parent dies or it is told to stop
it stops the tree: SIGTERM, SIGINT to what still runs after :data:`FORCE_QUIT_AFTER_S` (a
uvicorn worker's forced quit), SIGKILL after its grace period. See prctl(2).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
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

#: prctl(2) options (linux/prctl.h).
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: Seconds the guard gives the tree after SIGTERM when its parent died: shorter than
#: :data:`GRACE_S`, so that an orderly :func:`stop_tree` never has to kill the guard first.
GUARD_GRACE_S = 10.0
#: Seconds after SIGTERM before the guard sends SIGINT to what still runs. uvicorn (BentoML's
#: workers) waits after a first signal for open connections, background tasks and the app's
#: shutdown hooks with no time limit, and a SIGINT after it is its forced quit ("CTRL+C to force
#: quit", uvicorn.Server.handle_exit); an API worker was seen idle in that wait until killed
#: (2 of 7 stops, then 1 of 10, under load). Circus, Streamlit and MLflow's server stop on either.
FORCE_QUIT_AFTER_S = 2.0
#: Seconds between the guard's checks that its child runs and its parent lives (this also
#: bounds how long a SIGTERM, its parent's death included, waits to be acted on).
GUARD_POLL_S = 0.5


def start_group(
    cmd: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start ``cmd`` under a guard in a new session (its own process group), output to ``log_path``.

    The returned process is the guard (see the module's docstring): it exits with ``cmd``'s exit
    status, and stops ``cmd``'s whole tree if the calling process dies first.

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
        # -I: the guard needs only the standard library and psutil, and must not import this
        # checkout's modules (nor have service/ first on its path).
        guard = [sys.executable, "-I", str(Path(__file__).resolve()), str(os.getpid()), "--", *cmd]
        return subprocess.Popen(
            guard, cwd=cwd, env=dict(os.environ if env is None else env),
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
    alive = _wait(proc, tree[1:], grace_s)
    # Workers a manager (re)started during the grace period are in the tree now.
    alive = list({p.pid: p for p in [*alive, *_tree(proc.pid)[1:]]}.values())
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    _signal(alive, signal.SIGKILL)
    _wait(proc, alive, kill_wait_s)


def _wait(proc: subprocess.Popen, descendants: Sequence[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait up to ``timeout_s`` in all for ``descendants``, then for ``proc``; returns the descendants left.

    ``proc`` is waited for by its :class:`subprocess.Popen`, not by psutil: psutil reaps a child
    itself, and the Popen would then report exit status 0 instead of the guard's.
    """
    deadline = time.monotonic() + timeout_s
    _, alive = psutil.wait_procs(descendants, timeout=timeout_s)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    return alive


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
    stops the server with :func:`stop_tree` on leaving, also when the wait fails. The server's
    temporary files go to a folder of its own (``TMPDIR``), removed once it is stopped, killed or not.
    """
    import shutil
    import tempfile

    from service.client import SemqaClient

    env = dict(os.environ if env is None else env)
    # The checkout first on the path, as `python -m semqa.cli` from its root would have it.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    # `semqa service serve` keeps its workers' temporary files in a folder it removes when it
    # stops in order; this one also catches a server that had to be killed after the grace period.
    tmp = tempfile.mkdtemp(prefix="semqa-service-tmp-")
    env["TMPDIR"] = tmp
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
        shutil.rmtree(tmp, ignore_errors=True)


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {value}) failed")


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _reap() -> None:
    """Collect the exit status of ended children (a subreaper must, or adopted orphans stay zombies)."""
    for p in psutil.Process().children():
        if not _running(p):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p.pid, os.WNOHANG)


def _stop_descendants(grace_s: float) -> None:
    """SIGTERM every descendant of this process, SIGINT what still runs after
    :data:`FORCE_QUIT_AFTER_S`, SIGKILL what is left after ``grace_s`` seconds."""
    tree = psutil.Process().children(recursive=True)
    _signal(tree, signal.SIGTERM)
    start = time.monotonic()
    forced = False
    while time.monotonic() < start + grace_s and any(_running(p) for p in tree):
        time.sleep(GUARD_POLL_S)
        _reap()
        # Orphans adopted meanwhile (their manager ended first) are this process's children now.
        tree = list({p.pid: p for p in [*tree, *psutil.Process().children(recursive=True)]}.values())
        if not forced and time.monotonic() >= start + FORCE_QUIT_AFTER_S:
            _signal([p for p in tree if _running(p)], signal.SIGINT)
            forced = True
    _signal([*tree, *psutil.Process().children(recursive=True)], signal.SIGKILL)
    psutil.wait_procs(tree, timeout=KILL_WAIT_S)
    _reap()


def guard(parent_pid: int, cmd: Sequence[str]) -> int:
    """Run ``cmd`` and return its exit status; stop its whole tree if ``parent_pid`` dies or on SIGTERM.

    Linux only (prctl(2)); elsewhere the guard still runs ``cmd`` and stops it on SIGTERM.
    """
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stopping.append(True))
    if sys.platform.startswith("linux"):
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    child = subprocess.Popen(list(cmd))
    # The parent may have died before PR_SET_PDEATHSIG was set: then this process was adopted.
    while not stopping and os.getppid() == parent_pid:
        # Reaps adopted orphans as they end, and notices the child's own exit, without scanning /proc.
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid, status = 0, 0
        if pid == 0:
            time.sleep(GUARD_POLL_S)
        elif pid == child.pid:
            _stop_descendants(GUARD_GRACE_S)  # whatever the server left behind
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code
    _stop_descendants(GUARD_GRACE_S)
    return 128 + signal.SIGTERM


if __name__ == "__main__":
    # python -I launch.py PARENT_PID -- CMD...
    sys.exit(guard(int(sys.argv[1]), sys.argv[3:]))
