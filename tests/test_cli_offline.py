"""Hub names fail at once when the hub cannot be asked: one look-up and no retries.

A local server stands in for the hub (``HF_ENDPOINT``): it drops every connection (a broken
network), answers 503 (the hub down) or answers that no such repository exists, and counts
the requests. The commands
run in a subprocess without the offline variables, so the hub clients' own settings apply.
"""

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Hub(BaseHTTPRequestHandler):
    """Counts requests; drops the connection, answers 503 (down) or 404 "RepoNotFound"."""

    requests: list[str] = []
    mode = "drop"

    def _answer(self) -> None:
        type(self).requests.append(self.path)
        if type(self).mode == "drop":
            self.close_connection = True
            return
        self.send_response(404 if type(self).mode == "missing" else 503)
        if type(self).mode == "missing":
            self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        """Silent."""


@pytest.fixture
def hub(tmp_path):
    Hub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env |= {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "HF_HOME": str(tmp_path)}
    yield env
    server.shutdown()


def asked(name: str) -> list[str]:
    """The requests about ``name`` (the hub client may ask about itself as well)."""
    return [path for path in Hub.requests if name in path]


def attnmag(env: dict, *argv: str) -> subprocess.CompletedProcess:
    code = "import sys; from attnmag.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, "--quiet", *argv], capture_output=True, text=True, env=env
    )


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("drop", "not a local csv/json/jsonl/parquet/txt file, and not a hub dataset with split"),
        ("down", "not a local csv/json/jsonl/parquet/txt file, and not a hub dataset with split"),
        ("missing", "the Hugging Face hub has no such dataset"),
    ],
)
def test_a_hub_dataset_is_looked_up_once(mode, message, hub, tmp_path):
    Hub.mode = mode
    result = attnmag(hub, "run", "--dataset", "no-org/no-data", "--out", str(tmp_path / "o"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("attnmag: error: unknown corpus 'no-org/no-data': ")
    assert message in result.stderr and len(result.stderr.splitlines()) == 1
    assert len(asked("no-org/no-data")) == 1


@pytest.mark.parametrize("mode", ["drop", "missing"])
def test_a_hub_model_is_looked_up_once(mode, hub, corpus_csv, tmp_path):
    Hub.mode = mode
    argv = ["run", "--model", "no-org/no-model", "--dataset", str(corpus_csv)]
    result = attnmag(hub, *argv, "--text-column", "review", "--out", str(tmp_path / "o"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("attnmag: error: unknown model 'no-org/no-model'")
    assert len(asked("no-org/no-model")) == 1


def test_offline_mode_asks_nothing(hub, tmp_path):
    Hub.mode = "drop"
    offline = hub | {"HF_HUB_OFFLINE": "1"}
    result = attnmag(offline, "run", "--dataset", "no-org/no-data", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "unknown corpus 'no-org/no-data'" in result.stderr
    result = attnmag(offline, "run", "--model", "no-org/no-model", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "not in the local hub cache" in result.stderr
    assert Hub.requests == []
