"""What the Fargate and CodeBuild simulators share: the clock, process groups that die with the
emulator, and CloudWatch Logs written straight into moto's logs backend (in-process, so they
are never counted as client requests).
"""

from __future__ import annotations

import ctypes
import datetime as dt
import os
import signal
import threading
import time

from moto.logs.models import logs_backends

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
_logs_lock = threading.Lock()


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def die_with_parent() -> None:
    """Runs in the forked child before exec: SIGTERM it when the emulator dies, even by SIGKILL."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def ensure_stream(account: str, region: str, group: str, stream: str) -> None:
    """Creates the log group and stream unless they exist."""
    with _logs_lock:
        _ensure_stream(account, region, group, stream)


def put_log(account: str, target: tuple[str, str, str], line: str) -> None:
    """Appends one event to the (region, group, stream) `target`, recreating it if it was
    deleted meanwhile (e.g. a test reset moto)."""
    region, group, stream = target
    with _logs_lock:
        _ensure_stream(account, region, group, stream)
        logs_backends[account][region].put_log_events(group, stream, [{"timestamp": int(time.time() * 1000), "message": line}])


def _ensure_stream(account: str, region: str, group: str, stream: str) -> None:
    logs = logs_backends[account][region]
    if group not in logs.groups:
        logs.create_log_group(group, {})
    logs.ensure_log_stream(group, stream)
