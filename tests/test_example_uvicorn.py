"""The example service under a real uvicorn: what clients see around a shutdown.

uvicorn stops listening before it runs the lifespan shutdown, and lets the requests it is
serving finish first, so no request is ever handled while the queue drains: the example's
503 "shutting down" branch is reached only when a handler runs with no open default queue,
which under uvicorn is ``--lifespan off`` (or an app whose lifespan never opened one).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("uvicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(*options: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(ROOT / "examples" / "service"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *options,
            "app:app",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, base
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"uvicorn did not start:\n{proc.communicate()[0]}") from None
            time.sleep(0.1)


def post(url: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_orders_are_accepted_then_sigterm_drains_and_stops_listening() -> None:
    proc, base = start()
    try:
        status, body = post(f"{base}/orders/42")
        assert (status, body["order"]) == (202, "42")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # uvicorn re-raises SIGTERM once it has shut down cleanly (newer releases) or exits 0
    assert proc.returncode in (0, -signal.SIGTERM), out
    # the listener closed first, then the lifespan ran: the queue drained, nothing was refused
    assert out.index("Shutting down") < out.index("Waiting for application shutdown.")
    assert "Application shutdown complete." in out
    port = int(base.rsplit(":", 1)[1])
    with pytest.raises(OSError):  # what a new client sees once the drain has begun
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_without_a_lifespan_there_is_no_queue_and_orders_get_503() -> None:
    proc, base = start("--lifespan", "off")
    try:
        status, body = post(f"{base}/orders/7")
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert (status, body) == (503, {"error": "shutting down"})
