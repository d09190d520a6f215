"""The JSON Schema in a real editor engine: ``yaml-language-server`` (what VS Code's YAML extension
runs) over stdio, speaking LSP JSON-RPC, with the schema that ``zoo schema`` writes.

The server is installed from ``zoo_tests/lsp/package.json`` + ``package-lock.json`` (``npm ci``,
run by ``.ci/run``). The test skips only when ``node`` itself is absent.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import zoo

LSP_DIR = Path(__file__).resolve().parent / "lsp"
SERVER = LSP_DIR / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the language-server test needs it")
TIMEOUT = 60.0


class Client:
    """A minimal LSP client: framed JSON-RPC requests, notifications and server-to-client requests."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = 0
            while (line := out.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if not line:
                return
            self.inbox.put(json.loads(out.read(length)))

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.proc.stdin.flush()

    def notify(self, method: str, params: Any) -> None:
        self._send({"method": method, "params": params})

    def messages(self) -> Iterator[dict[str, Any]]:
        """Messages from the server; its own requests (configuration, registration) get answered."""
        while True:
            msg = self.inbox.get(timeout=TIMEOUT)
            if "method" in msg and "id" in msg:
                items = msg.get("params", {}).get("items", [])
                self._send({"id": msg["id"], "result": [{} for _ in items] if items else None})
                continue
            yield msg

    def request(self, method: str, params: Any) -> Any:
        self.next_id += 1
        self._send({"id": self.next_id, "method": method, "params": params})
        for msg in self.messages():
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg["result"]
        raise AssertionError("unreachable")

    def open(self, path: Path) -> list[dict[str, Any]]:
        """Open a document; the diagnostics the server publishes for it."""
        uri = path.as_uri()
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "yaml", "version": 1, "text": path.read_text()}})
        for msg in self.messages():
            if msg.get("method") == "textDocument/publishDiagnostics" and msg["params"]["uri"] == uri:
                return list(msg["params"]["diagnostics"])
        raise AssertionError("unreachable")

    def close(self) -> None:
        try:
            self.request("shutdown", None)
            self.notify("exit", None)
            self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    if not SERVER.exists():
        pytest.fail(f"yaml-language-server is not installed: run 'npm ci' in {LSP_DIR} (.ci/run does)")
    assert NODE is not None
    root = tmp_path_factory.mktemp("lsp")
    c = Client([NODE, str(SERVER), "--stdio"])
    c.request("initialize", {"processId": None, "rootUri": root.as_uri(), "capabilities": {
        "textDocument": {"completion": {"completionItem": {"snippetSupport": False}}, "publishDiagnostics": {}},
    }})
    c.notify("initialized", {})
    c.notify("workspace/didChangeConfiguration", {"settings": {"yaml": {"validate": True, "completion": True, "hover": True}}})
    yield c
    c.close()


@pytest.fixture(scope="module")
def schema_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("schema") / "zoo.schema.json"
    path.write_text(json.dumps(zoo.architecture_schema()))
    return path.as_uri()


MISTAKES = """\
cnofig: 1
name: five_mistakes
description: a file with five independent mistakes
source: zoo_tests/test_lsp.py
input: [1, 28, 28]
published: {params: 0, source: none}
layers:
  - cnov: {filters: 8, kernel: 3}
  - conv: {filtres: 8, kernel: 3}
  - conv: {filters: many, kernel: 3}
  - dense: {units: 10, act: rleu}
  - flatten
"""


def _write(tmp_path: Path, name: str, body: str, schema_uri: str) -> Path:
    path = tmp_path / name
    path.write_text(f"# yaml-language-server: $schema={schema_uri}\n{body}")
    return path


def test_the_five_mistakes_are_flagged_where_they_are(client: Client, schema_uri: str, tmp_path: Path) -> None:
    diagnostics = client.open(_write(tmp_path, "mistakes.yaml", MISTAKES, schema_uri))
    by_line: dict[int, list[str]] = {}
    for d in diagnostics:
        by_line.setdefault(d["range"]["start"]["line"], []).append(d["message"])
    print("\n".join(f"line {line + 1}: {' | '.join(msgs)}" for line, msgs in sorted(by_line.items())))
    # the file's line numbers, 0-based, after the modeline
    assert any("cnofig" in m for m in by_line.get(1, [])), by_line
    assert any("cnov" in m for m in by_line.get(8, [])), by_line
    assert any("filtres" in m for m in by_line.get(9, [])), by_line
    assert any("integer" in m for m in by_line.get(10, [])), by_line
    assert any("relu" in m for m in by_line.get(11, [])), by_line
    assert set(by_line) == {1, 8, 9, 10, 11}, by_line


def test_a_correct_file_has_no_diagnostics(client: Client, schema_uri: str, tmp_path: Path) -> None:
    text = Path(zoo.get_spec("inception_v3").file).read_text()
    assert client.open(_write(tmp_path, "inception_v3.yaml", text, schema_uri)) == []


def test_mistakes_inside_blocks_and_combinators_are_flagged(client: Client, schema_uri: str, tmp_path: Path) -> None:
    body = (
        "kind: blocks\nblocks:\n  b:\n    params: {f: required}\n    layers:\n"
        "      - residual:\n          body:\n            - conv: {filters: '${f}', kernal: 3}\n"
        "          shortcut: [{maxpol: 2}]\n"
        "      - concat: {branches: [[relu], [{dense: {units: -1}}]]}\n"
    )
    diagnostics = client.open(_write(tmp_path, "blocks.yaml", body, schema_uri))
    lines = sorted({d["range"]["start"]["line"] for d in diagnostics})
    assert lines == [8, 9, 10], diagnostics


def _labels(client: Client, path: Path, line: int, character: int) -> set[str]:
    result = client.request("textDocument/completion", {
        "textDocument": {"uri": path.as_uri()}, "position": {"line": line, "character": character}})
    items = result["items"] if isinstance(result, dict) else result
    return {item["label"] for item in items}


def test_completion_offers_layer_names_and_conv_arguments(client: Client, schema_uri: str, tmp_path: Path) -> None:
    body = "name: m\nlayers:\n  - \n  - conv: {filters: 8, kernel: 3}\n  - conv:\n      \n"
    path = _write(tmp_path, "complete.yaml", body, schema_uri)
    client.open(path)
    layers = _labels(client, path, 3, 4)
    assert {"conv", "dense", "maxpool", "residual", "concat", "flatten"} <= layers, sorted(layers)
    args = _labels(client, path, 6, 6)
    assert {"filters", "kernel", "stride", "padding", "act"} <= args, sorted(args)
