"""`archc lsp`, driven over stdio as an editor drives it: the server runs as `python -m archc lsp --stdio` and a
small JSON-RPC client speaks to it with LSP's Content-Length framing. Every wait has a hard timeout, so a test
fails instead of hanging when the server stops answering."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty, Queue

import pytest

import archc
from archc.diagnostics import ArchcError
from archc.loader import MAX_SPEC_BYTES
from archc.ops import ALIASES, MERGES, OPS, POST_OPS, SHORTCUTS

pytest.importorskip("pygls")

from archc import lsp  # noqa: E402 - needs pygls

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30


class Client:
    """A minimal JSON-RPC client with LSP's Content-Length framing."""

    def __init__(self, args=("--stdio",)):
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "archc", "lsp", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.messages: Queue = Queue()
        self.next_id = 0
        self.stderr = b""
        self.skipped: list = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self.stderr += line

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

    def write(self, data: bytes):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, method, params, request=False):
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            self.next_id += 1
            message["id"] = self.next_id
        body = json.dumps(message).encode("utf-8")
        self.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return message.get("id")

    def wait(self, predicate, timeout=TIMEOUT):
        """The first message, received or still to come, that the predicate accepts (the others are kept)."""
        for index, message in enumerate(self.skipped):
            if predicate(message):
                return self.skipped.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            except Empty:
                self.proc.kill()
                raise AssertionError("the server did not answer: " + self.stderr.decode(errors="replace")) from None
            if predicate(message):
                return message
            self.skipped.append(message)

    def request(self, method, params, timeout=TIMEOUT):
        ident = self.send(method, params, request=True)
        message = self.wait(lambda m: m.get("id") == ident, timeout)
        assert "error" not in message, message
        return message["result"]

    def diagnostics(self, uri):
        return self.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                         and m["params"]["uri"] == uri)["params"]["diagnostics"]

    def open(self, path: Path, text: str | None = None, uri: str | None = None):
        text = path.read_text() if text is None else text
        uri = uri or path.as_uri()
        self.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "arch", "version": 1,
                                                            "text": text}})
        return uri, self.diagnostics(uri)

    def change(self, uri, text, version):
        self.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                             "contentChanges": [{"text": text}]})
        return self.diagnostics(uri)

    def at(self, method, uri, line, character, **extra):
        return self.request(method, {"textDocument": {"uri": uri}, "position": {"line": line, "character": character},
                                     **extra})

    def close(self):
        try:
            self.request("shutdown", None)
            self.send("exit", None)
            self.proc.wait(timeout=TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def start(root: Path, options=None, args=("--stdio",), folders=True) -> Client:
    c = Client(args)
    params = {"processId": None, "rootUri": root.as_uri(), "capabilities": {}}
    if folders:
        params["workspaceFolders"] = [{"uri": root.as_uri(), "name": root.name}]
    if options is not None:
        params["initializationOptions"] = options
    result = c.request("initialize", params)
    capabilities = result["capabilities"]
    for provider in ("hoverProvider", "documentFormattingProvider", "completionProvider", "definitionProvider",
                     "documentSymbolProvider", "codeActionProvider"):
        assert capabilities.get(provider), provider
    c.send("initialized", {})
    return c


@pytest.fixture
def client(tmp_path):
    c = start(tmp_path)
    yield c
    c.close()


GOOD = """network tiny
import "blocks.arch"
input 32x32x3
stem 32x32 : conv 3x3, 16, same, bn, relu
body 16x16 : basic(32, stride=2)
head       : globalavgpool; dense 10
"""


def _value(hover):
    return hover["contents"]["value"]


def test_diagnostics_hover_and_formatting(client, tmp_path):
    (tmp_path / "blocks.arch").write_text((ROOT / "specs" / "blocks.arch").read_text())
    path = tmp_path / "tiny.arch"
    path.write_text(GOOD)
    uri, diags = client.open(path)
    assert diags == []

    # hover over `conv` on line 4 (0-based 3): the layer, its output and parameters
    text = _value(client.at("textDocument/hover", uri, 3, 14))
    assert "`stem.conv`" in text and "32x32x16" in text and "432" in text
    assert "`stem.bn`" in _value(client.at("textDocument/hover", uri, 3, 34))
    body = _value(client.at("textDocument/hover", uri, 4, 2))
    assert "`body`" in body and "16x16x32" in body

    # a change that breaks the stride: the same diagnostic `archc check` gives, at the same place
    broken = GOOD.replace("stem 32x32 : conv 3x3, 16, same", "stem 32x32 : conv 3x3, 16, stride=2, same")
    diags = client.change(uri, broken, 2)  # the stem, and the body after it, are now half the table's size
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
    # the changed line has no figures any more (the last good ones would be wrong): the kind's signature instead
    text = _value(client.at("textDocument/hover", uri, 3, 14))
    assert "stem.conv" not in text and "32x32x16" not in text and "filters" in text

    # a syntax error
    (diag,) = client.change(uri, GOOD + "conv 3x3,, 4\n", 3)
    assert diag["code"] == "A001" and diag["range"]["start"]["line"] == 6

    # formatting: one edit with the canonical text
    assert client.change(uri, GOOD.replace("conv 3x3, 16", "conv 3x3,16"), 4) == []
    edits = client.request("textDocument/formatting", {"textDocument": {"uri": uri},
                                                       "options": {"tabSize": 2, "insertSpaces": True}})
    assert len(edits) == 1 and edits[0]["newText"] == GOOD


def test_plain_lsp_and_allow_import_option(tmp_path):
    """`archc lsp` without `--stdio` serves too; `--allow-import DIR` allows imports from DIR."""
    project, lib = tmp_path / "project", tmp_path / "lib"
    project.mkdir()
    lib.mkdir()
    (lib / "blocks.arch").write_text("block unit(w):\n  conv 3x3, w, same\n")
    c = start(project, args=("--allow-import", str(lib)))
    try:
        uri, diags = c.open(project / "net.arch", 'import "../lib/blocks.arch"\ninput 8x8x3\nunit(4)\n')
        assert diags == []
    finally:
        c.close()


def test_layer_of_a_block_lists_its_instances(client, tmp_path):
    path = tmp_path / "net.arch"
    uri, diags = client.open(path, "input 8x8x3\nblock unit(w):\n  conv 3x3, w, same\nunit(4) x 3\n")
    assert diags == []
    value = _value(client.at("textDocument/hover", uri, 2, 4))
    assert value.startswith("3 layers come from this line") and "`unit3.conv`" in value


NET = """network net "a test network"
import "blocks.arch"
input 32x32x3
param classes=10, width=16

block unit(w, s=1):
  conv 3x3, w, stride=s, same, bn, relu

stem 32x32 : unit(width)
body 16x16 :
  basic(32, stride=2)
  inner:
    unit(32) x 2
head       : globalavgpool; dense classes
"""


@pytest.fixture
def net(client, tmp_path):
    (tmp_path / "blocks.arch").write_text((ROOT / "specs" / "blocks.arch").read_text())
    uri, diags = client.open(tmp_path / "net.arch", NET)
    assert diags == []
    return uri


def _labels(items):
    return {item["label"] for item in items["items"]}


def test_completion(client, tmp_path, net):
    uri = net
    kinds = set(OPS) | set(ALIASES)
    blocks = {"unit", "basic", "bottleneck", "dense_layer", "transition", "basic_stage", "bottleneck_stage",
              "vgg_stage", "inception", "dw_separable"}
    # at the start of an item: every layer kind of the registry, every block in scope (imported ones too)
    text = NET + "tail : "
    client.change(uri, text, 2)
    labels = _labels(client.at("textDocument/completion", uri, 14, 7))
    assert kinds <= labels and blocks <= labels
    assert {"residual", "concat"} <= labels
    # after a layer kind: its arguments and flags, the trailing layers, the parameters
    text = NET.replace("dense classes", "dense classes\nfinal : conv 3x3, 8, ")
    client.change(uri, text, 3)
    labels = _labels(client.at("textDocument/completion", uri, 14, len("final : conv 3x3, 8, ")))
    assert {f"{k}=" for k in OPS["conv"].args.model_fields} <= labels
    assert set(OPS["conv"].flags) <= labels and POST_OPS <= labels and {"classes", "width"} <= labels
    assert not ({"units=", "rate="} & labels)  # another kind's arguments
    # a named argument's value: the flags that set it
    text = NET.replace("dense classes", "dense classes\nfinal : conv 3x3, 8, padding=")
    client.change(uri, text, 4)
    labels = _labels(client.at("textDocument/completion", uri, 14, len("final : conv 3x3, 8, padding=")))
    assert {"same", "valid"} <= labels and "dw" not in labels
    # in a block call: the block's parameters (an imported block too)
    text = NET.replace("dense classes", "dense classes\nfinal : bottleneck(")
    client.change(uri, text, 5)
    labels = _labels(client.at("textDocument/completion", uri, 14, len("final : bottleneck(")))
    assert {"w=", "stride=", "at="} <= labels
    # in a block's body: the block's parameters are values too
    text = NET.replace("  conv 3x3, w, stride=s, same, bn, relu", "  conv 3x3, w, stride=s, same, bn, relu\n  dense ")
    client.change(uri, text, 6)
    labels = _labels(client.at("textDocument/completion", uri, 7, len("  dense ")))
    assert {"w", "s", "classes", "units="} <= labels
    # nothing in a comment
    text = NET + "# conv "
    client.change(uri, text, 7)
    assert _labels(client.at("textDocument/completion", uri, 14, 7)) == set()


def test_completion_offers_every_registered_kind_with_its_summary():
    items = lsp.complete("input 8\n", None, 1, 0)
    by_label = {item.label: item for item in items}
    for name in list(OPS) + list(ALIASES):
        assert name in by_label, name
        assert by_label[name].detail == OPS[ALIASES.get(name, name)].summary


def test_completion_of_a_residual_header():
    """`residual ` offers the merges and `shortcut=`; after `shortcut=`, the kinds of shortcut and parameters."""
    text = "input 8x8x4\nparam option=zeropad\nresidual shortcut=\n"
    after_word = {item.label for item in lsp.complete(text, None, 2, len("residual "))}
    assert after_word == set(MERGES) | {"shortcut="}
    values = {item.label for item in lsp.complete(text, None, 2, len("residual shortcut="))}
    assert set(SHORTCUTS) <= values and "option" in values


def test_definition(client, tmp_path, net):
    uri = net
    # a call of a block of this file -> its header
    loc = client.at("textDocument/definition", uri, 8, 14)
    assert loc["uri"] == uri and loc["range"]["start"] == {"line": 5, "character": 6}
    # a call of an imported block -> the block in blocks.arch
    loc = client.at("textDocument/definition", uri, 10, 4)
    assert loc["uri"] == (tmp_path / "blocks.arch").as_uri() and loc["range"]["start"]["line"] == 3
    # the import -> the file
    loc = client.at("textDocument/definition", uri, 1, 10)
    assert loc["uri"] == (tmp_path / "blocks.arch").as_uri()
    # a network parameter and a block parameter -> where they are declared
    loc = client.at("textDocument/definition", uri, 13, 34)
    assert loc["range"]["start"] == {"line": 3, "character": 6}
    loc = client.at("textDocument/definition", uri, 6, 23)
    assert loc["range"]["start"] == {"line": 5, "character": 14}


def test_document_symbols(client, net):
    symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": net}})

    def flat(items, depth=0):
        for s in items:
            yield depth, s["name"], s["kind"]
            yield from flat(s.get("children") or [], depth + 1)

    seen = list(flat(symbols))
    names = [(d, n) for d, n, _ in seen]
    for expected in [(0, "net"), (0, "input"), (0, "blocks.arch"), (0, "classes"), (0, "width"), (0, "unit"),
                     (1, "w"), (1, "s"), (0, "stem"), (0, "body"), (1, "inner"), (0, "head")]:
        assert expected in names, expected
    kinds = {n: k for _, n, k in seen}
    assert kinds["unit"] == 12 and kinds["stem"] == 3 and kinds["classes"] == 14  # function, namespace, constant
    stem = next(s for s in symbols if s["name"] == "stem")
    assert stem["selectionRange"]["start"] == {"line": 8, "character": 0}
    assert stem["selectionRange"]["end"] == {"line": 8, "character": 4}


def test_hover_on_headers_params_and_input(client, net):
    uri = net
    text = _value(client.at("textDocument/hover", uri, 2, 2))
    assert "32x32x3" in text and "output" in text and "10" in text
    assert "`classes`" in _value(client.at("textDocument/hover", uri, 3, 8)) and \
        "10" in _value(client.at("textDocument/hover", uri, 3, 8))
    text = _value(client.at("textDocument/hover", uri, 5, 7))
    assert "unit(w, s=1)" in text and "layers of the network come from it" in text
    assert "`s`" in _value(client.at("textDocument/hover", uri, 5, 14))
    assert "**`body.inner`** — 6 layers" in _value(client.at("textDocument/hover", uri, 11, 3))


def test_hover_works_while_the_document_has_errors_elsewhere(client, net):
    uri = net
    before = _value(client.at("textDocument/hover", uri, 13, 30))
    assert "`head.fc`" in before
    # a line added above (every line below moves) and a syntax error in it
    broken = NET.replace("stem 32x32", "oops ((\nstem 32x32")
    diags = client.change(uri, broken, 2)
    assert [d["code"] for d in diags] == ["A001"]
    after = _value(client.at("textDocument/hover", uri, 14, 30))
    assert after.startswith(before) and "last version that checked" in after
    # what the spec itself says still answers, at the moved positions
    assert "unit(w, s=1)" in _value(client.at("textDocument/hover", uri, 5, 7))
    symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    assert {"unit", "body", "head"} <= {s["name"] for s in symbols}
    # an error of inference (a layer that no longer fits) leaves the other lines' figures too
    broken = NET.replace("input 32x32x3", "input 32x32x3\n").replace("head       : globalavgpool;",
                                                                      "head       : conv 17x17, 4; globalavgpool;")
    diags = client.change(uri, broken, 3)
    assert diags and all(d["code"].startswith("A2") for d in diags)
    assert "`stem" in _value(client.at("textDocument/hover", uri, 9, 16))


def test_code_actions_apply_did_you_mean(client, tmp_path, net):
    uri = net
    cases = [("stem 32x32 : unit(width)", "stem 32x32 : unti(width)", "unti", "unit"),
             ("dense classes", "dense clases", "clases", "classes"),
             ("conv 3x3, w, stride=s", "convv 3x3, w, stride=s", "convv", "conv"),
             ("conv 3x3, w, stride=s", "conv 3x3, w, strid=s", "strid", "stride"),
             ("basic(32, stride=2)", "basic(32, strde=2)", "strde", "stride")]
    for version, (good, bad, word, replacement) in enumerate(cases, start=2):
        text = NET.replace(good, bad)
        diags = client.change(uri, text, version)
        assert diags, bad
        diag = next(d for d in diags if f"did you mean `{replacement}`?" in d["message"])
        actions = client.request("textDocument/codeAction", {
            "textDocument": {"uri": uri}, "range": diag["range"], "context": {"diagnostics": [diag]}})
        (action,) = [a for a in actions if a["kind"] == "quickfix"]
        assert action["diagnostics"] == [diag]
        (edit,) = action["edit"]["changes"][uri]
        assert edit["newText"] == replacement
        lines = text.split("\n")
        start, end = edit["range"]["start"], edit["range"]["end"]
        assert start["line"] == end["line"]
        assert lines[start["line"]][start["character"]:end["character"]] == word
        line = lines[start["line"]]
        lines[start["line"]] = line[:start["character"]] + replacement + line[end["character"]:]
        assert "\n".join(lines) == NET  # applying the fix gives back the spec that checks


def test_allowed_import_directories(tmp_path):
    project, lib = tmp_path / "project", tmp_path / "lib"
    project.mkdir()
    lib.mkdir()
    (lib / "blocks.arch").write_text("block unit(w):\n  conv 3x3, w, same\n")
    text = 'import "../lib/blocks.arch"\ninput 8x8x3\nunit(4)\n'
    # the default: the document's folder and the workspace folders
    c = start(project)
    try:
        _, diags = c.open(project / "net.arch", text)
        assert [d["code"] for d in diags] == ["A107"]
        c.send("workspace/didChangeConfiguration", {"settings": {"archc": {"allowImport": [str(lib)]}}})
        assert c.diagnostics((project / "net.arch").as_uri()) == []
    finally:
        c.close()
    c = start(project, options={"allowImport": ["../lib"]})  # relative to the workspace folder
    try:
        assert c.open(project / "net.arch", text)[1] == []
    finally:
        c.close()
    c = start(tmp_path)  # the workspace holds both folders
    try:
        assert c.open(project / "net.arch", text)[1] == []
    finally:
        c.close()


def test_keywords_are_the_grammars():
    grammar = (ROOT / "archc" / "grammar.lark").read_text()
    for word in lsp.TOP_KEYWORDS + lsp.ITEM_KEYWORDS:
        assert f'"{word}"' in grammar, word


# ---------------------------------------------------------------- hostile input


def test_a_huge_declared_length_is_refused_and_the_server_keeps_serving(client, tmp_path):
    client.write(b"Content-Length: 999999999999\r\n\r\n")
    client.write(b"X" * 1000 + b"\r\n")  # some of the pretended body
    uri, diags = client.open(tmp_path / "a.arch", "input 4\ndense 2\n")  # the next message is read
    assert diags == []
    log = client.wait(lambda m: m.get("method") == "window/logMessage" and "refused" in m["params"]["message"])
    assert "999999999999" in log["params"]["message"]
    # an overlong header line, and a header with a length of thousands of digits
    client.write(b"X-Junk: " + b"a" * 100_000 + b"\r\n" + b"Content-Length: " + b"9" * 4000 + b"\r\n\r\n")
    assert client.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                 "position": {"line": 1, "character": 1}}) is not None
    assert client.proc.poll() is None


def test_an_honest_oversized_message_is_dropped_unread(client, tmp_path):
    body = json.dumps({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": (tmp_path / "big.arch").as_uri(), "languageId": "arch", "version": 1,
        "text": "#" * (lsp.MAX_MESSAGE_BYTES + 10)}}}).encode()
    client.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    uri, diags = client.open(tmp_path / "a.arch", "input 4\ndense 2\n")
    assert diags == []
    client.wait(lambda m: m.get("method") == "window/logMessage" and "refused" in m["params"]["message"])


@pytest.mark.parametrize("target", ["/dev/zero", "/proc/self/fd/0", "/etc/passwd"])
def test_documents_never_opened_are_not_read(client, tmp_path, target):
    uri = Path(target).as_uri()
    doc = {"textDocument": {"uri": uri}}
    assert client.request("textDocument/formatting", {**doc, "options": {"tabSize": 2, "insertSpaces": True}},
                          timeout=10) is None
    client.send("textDocument/didSave", doc)
    client.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                           "contentChanges": [{"text": "input 4\n"}]})
    for method in ("textDocument/hover", "textDocument/definition", "textDocument/completion"):
        assert client.at(method, uri, 0, 0, timeout=10) is None
    assert client.request("textDocument/documentSymbol", doc, timeout=10) == []
    # and the server still serves
    assert client.open(tmp_path / "a.arch", "input 4\ndense 2\n")[1] == []
    assert client.proc.poll() is None


def test_a_slow_spec_does_not_block_hover_and_is_stopped(tmp_path):
    c = start(tmp_path, options={"checkTimeout": 1.5})
    try:
        uri, diags = c.open(tmp_path / "a.arch", "input 4\ndense 2\n")
        assert diags == []
        # about 1 MiB of dense layers: seconds to parse, far over the limit set above
        slow = "input 8\n" + "relu; relu; relu; relu; relu; relu; relu; relu; relu; relu\n" * (
            (MAX_SPEC_BYTES - 100) // 60)
        assert len(slow) <= MAX_SPEC_BYTES
        slow_uri = (tmp_path / "slow.arch").as_uri()
        c.send("textDocument/didOpen", {"textDocument": {"uri": slow_uri, "languageId": "arch", "version": 1,
                                                         "text": slow}})
        started = time.monotonic()
        hover = c.at("textDocument/hover", uri, 1, 1, timeout=10)
        assert "dense" in _value(hover) and time.monotonic() - started < 3
        (diag,) = c.diagnostics(slow_uri)
        assert diag["code"] == "A301" and "longer than 1.5 s" in diag["message"]
        # the checker comes back for the next change
        diags = c.change(uri, "input 4\ndense 3\ndens 2\n", 2)
        assert [d["code"] for d in diags] == ["A101"]
    finally:
        c.close()


def test_a_document_over_the_size_limit_is_refused_like_a_file(client, tmp_path):
    text = "input 4\n" + "#" * MAX_SPEC_BYTES + "\n"
    (tmp_path / "big.arch").write_text(text)
    with pytest.raises(ArchcError) as e:
        archc.check(tmp_path / "big.arch")
    (file_diag,) = e.value.diagnostics
    uri, (diag,) = client.open(tmp_path / "big.arch", text)
    assert diag["code"] == file_diag.code == "A301" and f"{MAX_SPEC_BYTES:,}" in diag["message"]


# ---------------------------------------------------------------- the framing, in process


def test_bounded_reader_drops_a_lying_length_and_resynchronises():
    real = b'{"jsonrpc": "2.0", "method": "initialized", "params": {}}'
    stream = io.BytesIO(b"Content-Length: 999999999999\r\n\r\n" + b"junk\r\n" * 5
                        + b"Content-Length: %d\r\n\r\n" % len(real) + real)
    reader = lsp.BoundedReader(stream, limit=1000)
    header = reader.readline()
    placeholder_length = int(re.match(rb"Content-Length: (\d+)", header).group(1))
    assert reader.readline() == b"\r\n"
    placeholder = reader.read(placeholder_length)
    assert json.loads(placeholder)["method"] == lsp.REFUSED_METHOD
    assert reader.readline() == b"Content-Length: %d\r\n" % len(real)
    assert reader.readline() == b"\r\n"
    assert reader.read(len(real)) == real


def test_bounded_reader_reads_an_oversized_body_in_bounded_chunks():
    class Counting(io.BytesIO):
        largest = 0

        def readline(self, size=-1):
            assert 0 < size <= 64 * 1024
            line = super().readline(size)
            Counting.largest = max(Counting.largest, len(line))
            return line

    body = b"x" * 1_000_000
    stream = Counting(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    reader = lsp.BoundedReader(stream, limit=1000)
    header = reader.readline()
    reader.readline()
    reader.read(int(re.match(rb"Content-Length: (\d+)", header).group(1)))
    assert stream.tell() == len(stream.getvalue()) and Counting.largest <= 64 * 1024


def test_analysis_is_the_check_pipeline(tmp_path):
    """The server's analysis gives exactly what `archc.check` gives for the same file."""
    for name in ("resnet18.arch", "googlenet.arch"):
        path = ROOT / "specs" / name
        analysis = lsp.analyse(path.read_text(), path)
        plan = archc.check(path)
        assert analysis.diagnostics == [] and [(n.name, n.shape, n.params) for n in analysis.plan.nodes] == \
            [(n.name, n.shape, n.params) for n in plan.nodes]


def test_the_documented_server_limits_are_the_constants():
    text = (ROOT / "docs" / "language.md").read_text()
    section = text[text.index("The language server (`archc lsp`) holds"):]
    assert f"at most {lsp.MAX_MESSAGE_BYTES:,} bytes" in section
    assert f"stopped after {lsp.CHECK_SECONDS:g} seconds" in section


def test_positions_are_in_the_clients_units():
    """Spans count code points; LSP counts UTF-16 units by default: a character outside the BMP is two."""
    from pygls.workspace.position_codec import PositionCodec

    from archc.diagnostics import Diagnostic, Span

    lines = ['network n "\U0001f600 net"  # \U0001f600', "input 4"]
    codec = PositionCodec()  # UTF-16
    span = Span(file="<spec>", line=1, column=21, end_line=1, end_column=23)
    diag = lsp.to_lsp(Diagnostic("A001", "x", span), "<spec>", lines, codec)
    assert diag.range.start.character == 21 and diag.range.end.character == 24
    assert lsp._position(lines, codec, type(diag.range.start)(line=0, character=24)) == (0, 22)


def test_the_worker_reports_a_crash_and_comes_back():
    """A checker that dies (out of memory, killed) gives the document a diagnostic, and the next check runs."""
    from queue import Queue

    worker = lsp.Worker(timeout=60)
    results: Queue = Queue()
    try:
        worker.submit("a", "check", ("input 4\n", None, []), lambda status, payload: results.put((status, payload)))
        assert results.get(timeout=TIMEOUT)[0] == "ok"  # the worker is up
        slow = "input 8\n" + "relu; relu; relu; relu; relu; relu; relu; relu; relu; relu\n" * 15_000
        worker.submit("a", "check", (slow, None, []), lambda status, payload: results.put((status, payload)))
        time.sleep(1)
        worker._process.kill()
        status, payload = results.get(timeout=TIMEOUT)
        assert status == "crash" and payload == -9
        worker.submit("b", "check", ("input 4\ndense 2\n", None, []), lambda s, p: results.put((s, p)))
        status, analysis = results.get(timeout=TIMEOUT)
        assert status == "ok" and analysis.plan is not None and analysis.diagnostics == []
    finally:
        worker.stop()
