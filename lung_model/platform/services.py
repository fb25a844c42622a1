"""Long-running local processes (Airflow, MLflow UI, dashboard): start, check, stop.

Each service runs in its own session (so stopping it stops its children too), logs to
`LUNG_HOME/log/<name>.log` and records its pid in `LUNG_HOME/services/<name>.pid` (not
`run/`: the embedded PostgreSQL uses that as its private runtime folder). Starting a
service whose pid is alive is a no-op, so `make demo` can be run again safely; `stop`
sends SIGTERM to the process group and SIGKILL after a grace period.
See https://docs.python.org/3/library/subprocess.html#subprocess.Popen
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from lung_model.settings import PROJECT_ROOT, Settings


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None  # answers once the service is up


def pid_file(settings: Settings, name: str) -> Path:
    return settings.home / "services" / f"{name}.pid"


def log_file(settings: Settings, name: str) -> Path:
    return settings.home / "log" / f"{name}.log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie child of ours is not alive
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def running(settings: Settings, name: str) -> int | None:
    """The pid of the service when it runs, else None (a stale pid file is removed)."""
    path = pid_file(settings, name)
    if not path.exists():
        return None
    pid = int(path.read_text().strip() or 0)
    if pid and _alive(pid):
        return pid
    path.unlink(missing_ok=True)
    return None


def start(settings: Settings, service: Service) -> int:
    """Start the service unless it already runs; return its pid."""
    if pid := running(settings, service.name):
        return pid
    log = log_file(settings, service.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file(settings, service.name).parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(
            service.argv,
            env={**os.environ, **service.env},
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file(settings, service.name).write_text(f"{process.pid}\n")
    return process.pid


def stop(settings: Settings, name: str, grace_seconds: float = 20.0) -> bool:
    """Stop the service and its children; True when one was running."""
    pid = running(settings, name)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    pid_file(settings, name).unlink(missing_ok=True)
    return True


def free_port() -> int:
    """A loopback TCP port free now, for a service started on it (tests, benches)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return bool(200 <= response.status < 400)
    except (urllib.error.URLError, OSError):
        return False


def wait_until_up(settings: Settings, service: Service, timeout: float = 120.0) -> None:
    """Wait for the health URL to answer; raise with the log's tail if the service died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running(settings, service.name) is None:
            tail = log_file(settings, service.name).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{service.name} exited; end of its log:\n{tail}")
        if service.health_url is None or http_ok(service.health_url):
            return
        time.sleep(1.0)
    raise TimeoutError(f"{service.name} did not answer {service.health_url} in {timeout:.0f}s")
