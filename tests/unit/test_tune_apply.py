"""`python -m imgbench.tune.apply` (compose's torchserve-tuned service, the Kubernetes sidecar) against a
fake TorchServe management API: a model whose settings differ is registered again with the ready
config and the management key, one that matches is left alone, a folder without ready files is an
error named at once. The real TorchServe: tests/integration/test_tune_servers.py."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from imgbench.tune import apply
from imgbench.tune.configs import write_ready_configs

MODEL = "pt_resnet18"
READY = {"batch_size": 16, "max_batch_delay_ms": 10, "workers": 2, "torch_threads": 1}


class FakeManagement(BaseHTTPRequestHandler):
    """GET/DELETE/POST/PUT /models like TorchServe 0.12, remembering each call and its bearer key."""

    state: ClassVar[dict] = {}
    calls: ClassVar[list[tuple[str, str, str]]] = []

    def _answer(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict[str, str]:
        self.calls.append((self.command, self.path, self.headers.get("Authorization", "")))
        return {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).items()}

    def do_GET(self) -> None:
        self._record()
        s = self.state
        workers = [{"id": str(9000 + i), "status": "READY"} for i in range(s["workers"])]
        self._answer([{"batchSize": s["batch"], "maxBatchDelay": s["delay"], "workers": workers}])

    def do_DELETE(self) -> None:
        self._record()
        self._answer({"status": "unregistered"})

    def do_POST(self) -> None:
        query = self._record()
        # Like a .mar whose maxWorkers is 1: initial_workers is capped, only a scale call raises it.
        self.state.update(batch=int(query["batch_size"]), delay=int(query["max_batch_delay"]), workers=1)
        self._answer({"status": "registered"})

    def do_PUT(self) -> None:
        query = self._record()
        self.state["workers"] = int(query["min_worker"])
        self._answer({"status": "scaled"})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def management() -> Iterator[str]:
    FakeManagement.state = {"batch": 8, "delay": 5, "workers": 1}
    FakeManagement.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeManagement)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _args(best: Path, url: str, key_file: Path | None = None) -> list[str]:
    argv = ["--server-config", str(best), "--management-url", url, "--wait-s", "5"]
    return argv + (["--key-file", str(key_file)] if key_file else [])


def test_a_differing_model_is_registered_again_with_the_key(tmp_path: Path, management: str) -> None:
    write_ready_configs("torchserve", MODEL, READY, tmp_path / "best")
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"management": {"key": "m-key"}, "inference": {"key": "i-key"}}))
    code = apply.main(apply.get_args_parser().parse_args(_args(tmp_path / "best", management, key_file)))
    assert code == 0
    assert FakeManagement.state == {"batch": 16, "delay": 10, "workers": 2}
    methods = [method for method, _, _ in FakeManagement.calls]
    assert methods == ["GET", "DELETE", "POST", "PUT", "GET"]
    assert {key for _, _, key in FakeManagement.calls} == {"Bearer m-key"}
    assert f"/models/{MODEL}" in FakeManagement.calls[1][1]


def test_a_model_on_the_ready_config_is_left_alone(tmp_path: Path, management: str) -> None:
    FakeManagement.state = {"batch": 16, "delay": 10, "workers": 2}
    write_ready_configs("torchserve", MODEL, READY, tmp_path / "best")
    assert apply.main(apply.get_args_parser().parse_args(_args(tmp_path / "best", management))) == 0
    assert [method for method, _, _ in FakeManagement.calls] == ["GET"]


def test_a_folder_without_ready_files_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    code = apply.main(apply.get_args_parser().parse_args(_args(tmp_path, "http://127.0.0.1:9")))
    assert code == 2
    assert f"{tmp_path / 'torchserve'} has no <model>.model-config.yaml" in caplog.text
