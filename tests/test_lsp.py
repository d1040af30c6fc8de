"""`archc lsp`, spoken to over stdio as an editor would: diagnostics on open and change, hover, formatting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from queue import Empty, Queue

import pytest

import archc
from archc.diagnostics import ArchcError

pytest.importorskip("pygls")

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30


class Client:
    """A minimal JSON-RPC client with LSP's Content-Length framing."""

    def __init__(self):
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "archc", "lsp"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.messages: Queue = Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        stream = self.proc.stdout
        while True:
            length = None
            while True:
                line = stream.readline()
                if not line:
                    return
                line = line.decode("ascii").strip()
                if not line:
                    break
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":")[1])
            self.messages.put(json.loads(stream.read(length)))

    def send(self, method, params, request=False):
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            self.next_id += 1
            message["id"] = self.next_id
        body = json.dumps(message).encode("utf-8")
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()
        return message.get("id")

    def wait(self, predicate):
        while True:
            try:
                message = self.messages.get(timeout=TIMEOUT)
            except Empty:
                self.proc.kill()  # first: reading a live server's stderr would wait for it forever
                raise AssertionError("the server did not answer: " + self.proc.stderr.read().decode()) from None
            if predicate(message):
                return message

    def request(self, method, params):
        ident = self.send(method, params, request=True)
        return self.wait(lambda m: m.get("id") == ident)

    def diagnostics(self, uri):
        return self.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                         and m["params"]["uri"] == uri)["params"]["diagnostics"]

    def close(self):
        self.request("shutdown", None)
        self.send("exit", None)
        self.proc.wait(timeout=TIMEOUT)


@pytest.fixture
def client(tmp_path):
    c = Client()
    result = c.request("initialize", {"processId": None, "rootUri": tmp_path.as_uri(), "capabilities": {}})
    capabilities = result["result"]["capabilities"]
    assert capabilities["hoverProvider"] and capabilities["documentFormattingProvider"]
    c.send("initialized", {})
    yield c
    c.close()


GOOD = """network tiny
import "blocks.arch"
input 32x32x3
stem 32x32 : conv 3x3, 16, same, bn, relu
body 16x16 : basic(32, stride=2)
head       : globalavgpool; dense 10
"""


def test_diagnostics_hover_and_formatting(client, tmp_path):
    (tmp_path / "blocks.arch").write_text((ROOT / "specs" / "blocks.arch").read_text())
    path = tmp_path / "tiny.arch"
    path.write_text(GOOD)
    uri = path.as_uri()
    client.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "arch", "version": 1,
                                                          "text": GOOD}})
    assert client.diagnostics(uri) == []

    # hover over `conv` on line 4 (0-based 3): the layer, its output and parameters
    hover = client.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                  "position": {"line": 3, "character": 14}})
    text = hover["result"]["contents"]["value"]
    assert "`stem.conv`" in text and "32x32x16" in text and "432" in text
    hover = client.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                  "position": {"line": 3, "character": 34}})
    assert "`stem.bn`" in hover["result"]["contents"]["value"]
    hover = client.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                  "position": {"line": 4, "character": 2}})
    assert "`body`" in hover["result"]["contents"]["value"] and "16x16x32" in hover["result"]["contents"]["value"]

    # a change that breaks the stride: the same diagnostic `archc check` gives, at the same place
    broken = GOOD.replace("stem 32x32 : conv 3x3, 16, same", "stem 32x32 : conv 3x3, 16, stride=2, same")
    client.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                           "contentChanges": [{"text": broken}]})
    diags = client.diagnostics(uri)  # the stem, and the body after it, are now half the table's size
    assert [d["code"] for d in diags] == ["A204", "A204"]
    diag = diags[0]
    assert diag["source"] == "archc" and diag["severity"] == 1
    assert diag["range"]["start"] == {"line": 3, "character": 5}
    assert diag["range"]["end"] == {"line": 3, "character": 10}
    assert "16x16x16" in diag["message"]
    (tmp_path / "broken.arch").write_text(broken)
    with pytest.raises(ArchcError) as e:
        archc.check(tmp_path / "broken.arch")
    assert [(d.code, d.span.line - 1, d.message) for d in e.value.diagnostics] == \
        [(d["code"], d["range"]["start"]["line"], d["message"].splitlines()[0]) for d in diags]
    assert client.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                 "position": {"line": 3, "character": 14}})["result"] is None

    # a syntax error
    client.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": 3},
                                           "contentChanges": [{"text": GOOD + "conv 3x3,, 4\n"}]})
    (diag,) = client.diagnostics(uri)
    assert diag["code"] == "A001" and diag["range"]["start"]["line"] == 6

    # formatting: one edit with the canonical text
    messy = GOOD.replace("conv 3x3, 16", "conv 3x3,16")
    client.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": 4},
                                           "contentChanges": [{"text": messy}]})
    assert client.diagnostics(uri) == []
    edits = client.request("textDocument/formatting", {"textDocument": {"uri": uri},
                                                       "options": {"tabSize": 2, "insertSpaces": True}})["result"]
    assert len(edits) == 1 and edits[0]["newText"] == GOOD


def test_layer_of_a_block_lists_its_instances(client, tmp_path):
    path = tmp_path / "net.arch"
    text = "input 8x8x3\nblock unit(w):\n  conv 3x3, w, same\nunit(4) x 3\n"
    path.write_text(text)
    uri = path.as_uri()
    client.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "arch", "version": 1,
                                                          "text": text}})
    assert client.diagnostics(uri) == []
    hover = client.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                  "position": {"line": 2, "character": 4}})
    value = hover["result"]["contents"]["value"]
    assert value.startswith("3 layers come from this line") and "`unit3.conv`" in value
