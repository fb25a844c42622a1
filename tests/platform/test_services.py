"""Local services: started once, found again by pid file, stopped with their children."""

from __future__ import annotations

import sys

import pytest

from lung_model.platform import services
from lung_model.settings import Settings


def test_start_is_idempotent_and_stop_ends_it(settings: Settings) -> None:
    port = services.free_port()
    web = services.Service(
        "web",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        health_url=f"http://127.0.0.1:{port}/",
    )
    pid = services.start(settings, web)
    try:
        services.wait_until_up(settings, web, timeout=30)
        assert services.http_ok(f"http://127.0.0.1:{port}/")
        assert services.start(settings, web) == pid  # already running: not started twice
        assert services.running(settings, "web") == pid
    finally:
        assert services.stop(settings, "web", grace_seconds=5)
    assert services.running(settings, "web") is None
    assert not services.pid_file(settings, "web").exists()
    assert not services.http_ok(f"http://127.0.0.1:{port}/", timeout=0.5)
    assert services.stop(settings, "web") is False


def test_a_service_that_dies_reports_its_log(settings: Settings) -> None:
    broken = services.Service(
        "broken",
        [sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"],
        health_url="http://127.0.0.1:9/",
    )
    services.start(settings, broken)
    with pytest.raises(RuntimeError, match="bad config"):
        services.wait_until_up(settings, broken, timeout=30)
    assert services.running(settings, "broken") is None
