"""The stack's processes: owner-only files, pid records that survive pid reuse, start and stop
of whole process groups, and the wait for a server to become healthy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reelflow.devstack.config import StackConfig
from reelflow.devstack.errors import PortsTaken, StackError
from reelflow.devstack.ports import port_is_free

BIND_FAILED = "address already in use"
"""What a server logs when a port was taken between our check and its bind (Go and C alike)."""

# -- owner-only files -------------------------------------------------------------------------


def private_dir(path: Path) -> Path:
    """mkdir -p with mode 0700 (also tightening an existing one)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def make_private(home: Path) -> None:
    """chmod go-rwx everything under `home` (state written by older versions, or by a server
    that ignores the umask); PostgreSQL's own data is already 0700/0600."""
    private_dir(home)
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            p = Path(root) / name
            try:
                st = p.lstat()
                if not p.is_symlink() and st.st_mode & 0o077:
                    os.chmod(p, st.st_mode & 0o700)
            except OSError:
                continue  # a socket or file that vanished while we walked


def write_private(path: Path, text: str) -> None:
    """Write `text` atomically with mode 0600."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_state(config: StackConfig, state: dict[str, Any]) -> None:
    """Write stack.json atomically with mode 0600 (it holds every credential of the stack)."""
    private_dir(config.home)
    write_private(config.stack_file, json.dumps(state, indent=2))


# -- process records --------------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on; the command name before it may hold spaces."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def proc_start_time(pid: int) -> int | None:
    """Kernel start time of `pid` (Linux /proc), used to tell our process from a reused pid."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None  # field 22 overall


def _reap(pid: int) -> None:
    """Collect our own exited child (tests start the stack in-process) so it is not a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    return (fields[0] if fields else None) not in ("Z", "X")


def pid_file(config: StackConfig, name: str) -> Path:
    return config.run_dir / f"{name}.pid"


def read_pid(config: StackConfig, name: str) -> dict[str, Any] | None:
    path = pid_file(config, name)
    try:
        rec = json.loads(path.read_text())
        int(rec["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rec


def running_pid(config: StackConfig, name: str) -> int | None:
    """The recorded pid if that very process (same start time) is still alive."""
    rec = read_pid(config, name)
    if rec is None:
        return None
    pid = int(rec["pid"])
    if not alive(pid):
        return None
    started = rec.get("start_time")
    if started is not None and proc_start_time(pid) not in (None, started):
        return None  # pid reused by an unrelated process
    return pid


# -- start, stop, wait ------------------------------------------------------------------------


def spawn(config: StackConfig, name: str, cmd: list[str], env: dict[str, str],
          cwd: Path) -> int:
    """Start `cmd` detached in its own session, logging to logs/NAME.log; record its pid."""
    private_dir(config.log_dir)
    private_dir(config.run_dir)
    log_path = config.log_dir / f"{name}.log"
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        log.write(f"\n--- {datetime.now(UTC).isoformat()} starting {Path(cmd[0]).name}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, umask=0o077,
        )
    rec = {"pid": proc.pid, "start_time": proc_start_time(proc.pid), "cmd": cmd[:2],
           "started_at": datetime.now(UTC).isoformat()}
    write_private(pid_file(config, name), json.dumps(rec))
    return proc.pid


def _log_text(config: StackConfig, name: str) -> str:
    """This start's part of logs/NAME.log (the log is appended to across starts)."""
    try:
        text = (config.log_dir / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""
    return text[text.rfind("\n--- "):]


def log_tail(config: StackConfig, name: str, redact: str | None = None, lines: int = 8) -> str:
    tail = "\n".join(_log_text(config, name).splitlines()[-lines:])
    return tail.replace(redact, "***") if redact else tail


def stop_pid(pid: int, timeout: float = 10.0, first: int = signal.SIGTERM) -> None:
    """Signal the process group led by `pid` (`first`, then SIGKILL after `timeout`)."""
    for sig, wait in ((first, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.1)


def wait_healthy(config: StackConfig, name: str, pid: int, check: Callable[[], bool],
                 redact: str | None) -> None:
    """Until `check()` passes; a server that exits or never answers is one StackError (a
    PortsTaken when its log says a port was taken first)."""
    deadline = time.monotonic() + config.timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not alive(pid):
            pid_file(config, name).unlink(missing_ok=True)
            error = PortsTaken if BIND_FAILED in _log_text(config, name).lower() else StackError
            raise error(
                f"{name} exited during startup; see {config.log_dir / (name + '.log')}:\n"
                + log_tail(config, name, redact)
            )
        time.sleep(0.25)
    error = PortsTaken if BIND_FAILED in _log_text(config, name).lower() else StackError
    raise error(
        f"{name} not healthy after {config.timeout:.0f}s (pid {pid} left running; "
        f"`reelflow down` stops it); see {config.log_dir / (name + '.log')}"
    )


PORT_RELEASE_S = 5.0


def check_ports_free(config: StackConfig, ports: dict[str, int],
                     grace: float = PORT_RELEASE_S) -> None:
    """Each port can be listened on, waiting up to `grace` seconds for it to come free.

    The wait is for a server killed a moment ago: its pid already reads as gone (a zombie
    leader) while its other threads still hold the listening socket, so an `up` right after
    a crash would otherwise be refused on its own stack's ports.
    """
    deadline = time.monotonic() + grace
    for what, port in ports.items():
        while not port_is_free(port, config.host) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not port_is_free(port, config.host):
            raise PortsTaken(
                f"port {config.host}:{port} ({what}) is already in use by another process; "
                "move the stack (REELFLOW_BASE_PORT=N or auto; see `reelflow up --help`) "
                "or stop that process"
            )
