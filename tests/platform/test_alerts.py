"""Alerts: always logged, POSTed to the webhook when one is configured."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from lung_model.platform import alerts
from lung_model.settings import Settings


class Recorder(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Recorder.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_alert_logs_always_and_posts_to_the_webhook(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    assert alerts.alert("no webhook", {"n": 1}, settings) is False
    assert "ALERT no webhook" in caplog.text
    server = HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hooked = settings.model_copy(
            update={"alert_webhook": f"http://127.0.0.1:{server.server_port}/hook"}
        )
        assert alerts.alert("lung_batch_score failed", {"run_id": "r1"}, hooked) is True
    finally:
        server.shutdown()
    assert Recorder.received[-1] == {"text": "lung_batch_score failed", "details": {"run_id": "r1"}}
    dead = settings.model_copy(update={"alert_webhook": "http://127.0.0.1:9/nothing"})
    assert alerts.alert("still logged", {}, dead) is False
    assert "ALERT still logged" in caplog.text
