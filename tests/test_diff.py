"""`archc diff A B` (archc/diff.py, docs/diff.md): stage deltas and the layers that differ, paired through the
structure by archc.match's tolerant walk, while structural `load_weights` stays strict."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import archc
from archc.cli import main
from archc.diff import diff, side_of_flat, side_of_plan
from archc.flat import FlatNetwork, Unsupported, flat_of_plan
from archc.match import graph_of_plan, match

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def run(*args: str):
    return CliRunner().invoke(main, ["diff", *args])


def run_json(*args: str) -> tuple[int, dict]:
    result = run(*args, "--format", "json")
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture(scope="module")
def v1_v15():
    code, doc = run_json(str(SPECS / "resnet50.arch"), str(SPECS / "resnet50.arch"), "--set-b", "downsample_at=2")
    return code, doc


# ---------------------------------------------------------------- v1 against v1.5


def test_v1_against_v1_5_shows_exactly_the_strides_that_moved_and_their_cost(v1_v15):
    code, doc = v1_v15
    assert code == 1 and doc["same"] is False
    moved = {(layer["a"], change["field"], tuple(change["a"]), tuple(change["b"]))
             for layer in doc["layers"] for change in layer["changes"] if change["field"] not in ("input", "output")}
    assert moved == {(f"{stage}.0.{conv}", "stride", old, new)
                     for stage in ("conv3_x", "conv4_x", "conv5_x")
                     for conv, old, new in (("conv1", (2, 2), (1, 1)), ("conv2", (1, 1), (2, 2)))}
    assert all(layer["a"] == layer["b"] for layer in doc["layers"])  # paired with itself, not a neighbour
    assert doc["only_a"] == doc["only_b"] == []
    # the MACs it costs: what the two checks say, 3,857,973,248 -> 4,089,184,256
    a, b = archc.check(SPECS / "resnet50.arch"), archc.check(SPECS / "resnet50.arch", downsample_at=2)
    assert doc["totals"]["delta"]["macs"] == b.macs - a.macs == 231_211_008
    assert doc["totals"]["a"]["macs"] == 3_857_973_248 and doc["totals"]["b"]["macs"] == 4_089_184_256
    assert doc["totals"]["delta"]["params"] == 0
    by_stage = {s["name"]: s["b"]["macs"] - s["a"]["macs"] for s in doc["stages"]}
    assert by_stage["conv1"] == by_stage["conv2_x"] == by_stage["head"] == 0
    assert by_stage["conv3_x"] + by_stage["conv4_x"] + by_stage["conv5_x"] == 231_211_008


def test_v1_against_v1_5_in_words():
    result = run(str(SPECS / "resnet50.arch"), str(SPECS / "resnet50.arch"), "--set-b", "downsample_at=2")
    assert result.exit_code == 1
    out = result.stdout
    assert "B: resnet50 (" in out and "downsample_at=2)" in out
    assert re.search(r"conv3_x\.0\.conv1 +stride 2 -> 1; output 28x28x128 -> 56x56x128", out)
    assert re.search(r"conv3_x\.0\.conv2 +stride 1 -> 2; input 28x28x128 -> 56x56x128\n", out)
    assert "(+231,211,008, +5.99%)" in out
    assert re.search(r"^total .* 3\.86G +4\.09G +\+231M$", out, re.M)
    assert "only in" not in out


def test_set_applies_to_both_sides_and_a_sides_own_wins():
    code, doc = run_json(str(SPECS / "resnet50.arch"), str(SPECS / "resnet50.arch"), "--set", "classes=10",
                         "--set-b", "downsample_at=2")
    assert code == 1 and doc["a"]["sets"] == {"classes": "10"}
    assert doc["b"]["sets"] == {"classes": "10", "downsample_at": "2"}
    assert doc["totals"]["delta"]["macs"] == 231_211_008
    code, doc = run_json(str(SPECS / "resnet50.arch"), str(SPECS / "resnet50.arch"), "--set", "downsample_at=2",
                         "--set-a", "downsample_at=1")
    assert code == 1 and doc["totals"]["delta"]["macs"] == 231_211_008


# ---------------------------------------------------------------- the same network


def test_identical_specs_say_so_and_exit_0():
    result = run(str(SPECS / "resnet18.arch"), str(SPECS / "resnet18.arch"))
    assert result.exit_code == 0
    assert "A and B are the same network: 69 layers, 11,699,112 params" in result.stdout
    code, doc = run_json(str(SPECS / "resnet18.arch"), str(SPECS / "resnet18.arch"))
    assert code == 0 and doc["same"] is True and doc["layers"] == doc["only_a"] == doc["only_b"] == []


SHIPPED = sorted(p.name for p in SPECS.glob("*.arch") if p.name != "blocks.arch")


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_spec_is_the_same_as_itself_and_as_its_flat_network(name):
    plan = archc.check(SPECS / name)
    for other in (side_of_plan(plan, what="B"), side_of_flat(flat_of_plan(plan))):
        result = diff(side_of_plan(plan), other)
        assert result.same and result.pairs == list(range(len(plan.nodes))), name


def test_names_do_not_matter(tmp_path):
    """Matched through structure: the same network under other stage names is the same network."""
    body = "  residual:\n    conv 3x3, 16, same, bn, relu\n    conv 3x3, 16, same, bn\n"
    (tmp_path / "a.arch").write_text("network a\ninput 32x32x3\nstem: conv 3x3, 16, same, bn, relu\n"
                                     f"body:\n{body}head: globalavgpool; dense 10\n")
    (tmp_path / "b.arch").write_text("network b\ninput 32x32x3\nfirst: conv 3x3, 16, same, bn, relu\n"
                                     f"blocks:\n{body}last: globalavgpool; dense 10\n")
    result = run(str(tmp_path / "a.arch"), str(tmp_path / "b.arch"))
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------- widths, added and removed layers


def test_a_width_change_names_the_stages_and_the_layers_that_widened():
    """ResNet-50 (v1.5, as torchvision's) against Wide ResNet-50-2: the inner 1x1 and 3x3 convs of every
    block are twice as wide, the stem, the 4w convs, the shortcuts and the head are not."""
    code, doc = run_json(str(SPECS / "resnet50.arch"), str(SPECS / "wide_resnet50_2.arch"),
                         "--set-a", "downsample_at=2")
    assert code == 1 and doc["only_a"] == doc["only_b"] == []
    widened = {(layer["a"], change["a"], change["b"]) for layer in doc["layers"] for change in layer["changes"]
               if change["field"] == "filters"}
    blocks = [(stage, i, w) for stage, n, w in (("conv2_x", 3, 64), ("conv3_x", 4, 128), ("conv4_x", 6, 256),
                                                 ("conv5_x", 3, 512)) for i in range(n)]
    assert widened == {(f"{stage}.{i}.{conv}", w, 2 * w) for stage, i, w in blocks for conv in ("conv1", "conv2")}
    fields = {change["field"] for layer in doc["layers"] for change in layer["changes"]}
    assert fields == {"filters", "input", "output"}  # input: the 4w convs read wider maps (more weights)
    deltas = {s["name"]: s["b"]["params"] - s["a"]["params"] for s in doc["stages"]}
    assert deltas["conv1"] == deltas["head"] == 0
    assert all(deltas[s] > 0 for s in ("conv2_x", "conv3_x", "conv4_x", "conv5_x"))
    assert [s["b"]["name"] for s in doc["stages"]] == ["conv1", "conv2", "conv3", "conv4", "conv5", "head"]


def test_resnext_changes_groups_and_widths():
    code, doc = run_json(str(SPECS / "resnet50.arch"), str(SPECS / "resnext50_32x4d.arch"),
                         "--set-a", "downsample_at=2")
    changed = {change["field"] for layer in doc["layers"] for change in layer["changes"]}
    assert code == 1 and changed == {"filters", "groups", "input", "output"}
    groups = [layer["a"] for layer in doc["layers"] if any(c["field"] == "groups" for c in layer["changes"])]
    assert len(groups) == 16 and all(name.endswith(".conv2") for name in groups)


def _write(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.arch"
    path.write_text(f"network {name}\ninput 32x32x3\n{body}")
    return str(path)


def test_an_added_layer_is_only_in_b_and_what_follows_still_pairs(tmp_path):
    a = _write(tmp_path, "a", "s1: conv 3x3, 16, same, bn\ns2: conv 3x3, 16, same, bn, relu\n"
                              "head: globalavgpool; dense 10\n")
    b = _write(tmp_path, "b", "s1: conv 3x3, 16, same, bn, relu\ns2: conv 3x3, 16, same, bn, relu\n"
                              "head: globalavgpool; dense 10\n")
    code, doc = run_json(a, b)
    assert code == 1 and doc["only_b"] == ["s1.relu"] and doc["only_a"] == [] and doc["layers"] == []
    code, doc = run_json(b, a)  # and the other way round
    assert code == 1 and doc["only_a"] == ["s1.relu"] and doc["only_b"] == [] and doc["layers"] == []
    text = run(a, b).stdout
    assert "only in B (1 layer):\n  s1.relu (relu, output 32x32x16; 0 params, 0 MACs)" in text


def test_layers_without_weights_are_compared_too(tmp_path):
    """A stride moved onto a pool, another pooling kind, another activation: each is a difference."""
    a = _write(tmp_path, "a", "s1: conv 3x3, 16, same, relu; maxpool 2x2, stride=2\ns2: conv 3x3, 32, same, relu\n")
    b = _write(tmp_path, "b", "s1: conv 3x3, 16, same, relu6; avgpool 2x2, stride=1\ns2: conv 3x3, 32, same, relu\n")
    code, doc = run_json(a, b)
    changes = {layer["a"]: {c["field"]: (c["a"], c["b"]) for c in layer["changes"]} for layer in doc["layers"]}
    assert code == 1 and doc["only_a"] == doc["only_b"] == []
    assert changes["s1.relu"] == {"kind": ("relu", "relu6")}
    pool = next(name for name in changes if "pool" in name)
    assert changes[pool]["kind"] == ("maxpool", "avgpool") and changes[pool]["stride"] == ([2, 2], [1, 1])
    assert changes["s2.conv"] == {"output": ([16, 16, 32], [31, 31, 32])}


def test_a_branch_of_a_concatenation_narrower_and_a_layer_added(tmp_path):
    """GoogLeNet with inception_4c's pool projection at 48 (not 64) and a relu after pool3: the branch pairs with
    its own (not a sibling of the same kind), the concatenation and what reads it change size, the relu is new."""
    (tmp_path / "blocks.arch").write_text((SPECS / "blocks.arch").read_text())
    text = (SPECS / "googlenet.arch").read_text()
    text = text.replace("inception_4c 14x14x512  : inception(128, 128, 256, 24, 64, 64)",
                        "inception_4c 14x14x496  : inception(128, 128, 256, 24, 64, 48)")
    text = text.replace("pool3        14x14x480  : maxpool 3x3, stride=2, same",
                        "pool3        14x14x480  : maxpool 3x3, stride=2, same; relu")
    (tmp_path / "g2.arch").write_text(text)
    code, doc = run_json(str(SPECS / "googlenet.arch"), str(tmp_path / "g2.arch"))
    changes = {layer["a"]: {c["field"]: (c["a"], c["b"]) for c in layer["changes"]} for layer in doc["layers"]}
    assert code == 1 and doc["only_a"] == [] and doc["only_b"] == ["pool3.relu"]
    assert [name for name, c in changes.items() if set(c) - {"input", "output"}] == ["inception_4c.branch4.conv"]
    assert changes["inception_4c.branch4.conv"]["filters"] == (64, 48)
    assert changes["inception_4c.concat"] == {"output": ([14, 14, 512], [14, 14, 496])}
    readers = {name for name in changes if name.startswith("inception_4d")}
    assert readers == {"inception_4d.branch1.conv", "inception_4d.branch2.conv1", "inception_4d.branch3.conv1",
                       "inception_4d.branch4.maxpool", "inception_4d.branch4.conv"}
    assert doc["totals"]["delta"]["params"] == -13_840


def test_a_removed_block_is_only_in_a_resnet34_against_resnet18():
    code, doc = run_json(str(SPECS / "resnet34.arch"), str(SPECS / "resnet18.arch"))
    assert code == 1 and doc["layers"] == [] and doc["only_b"] == []
    blocks = sorted({name.rsplit(".", 1)[0] for name in doc["only_a"]})
    assert blocks == ["conv2_x.2", "conv3_x.2", "conv3_x.3", "conv4_x.2", "conv4_x.3", "conv4_x.4", "conv4_x.5",
                      "conv5_x.2"]
    assert len(doc["only_a"]) == 8 * 7
    a, b = archc.check(SPECS / "resnet34.arch"), archc.check(SPECS / "resnet18.arch")
    assert doc["totals"]["delta"] == {"params": b.total_params - a.total_params, "macs": b.macs - a.macs,
                                      "trainable_params": b.trainable_params - a.trainable_params,
                                      "non_trainable_params": b.non_trainable_params - a.non_trainable_params,
                                      "layers": len(b.nodes) - len(a.nodes)}
    text = run(str(SPECS / "resnet34.arch"), str(SPECS / "resnet18.arch")).stdout
    assert "  conv2_x.2 (7 layers: conv, batchnorm, relu, conv, batchnorm, add, relu; 74,240 params, 231M MACs)" \
        in text
    code, doc = run_json(str(SPECS / "resnet18.arch"), str(SPECS / "resnet34.arch"))  # added blocks
    assert doc["layers"] == doc["only_a"] == [] and len(doc["only_b"]) == 56


# ---------------------------------------------------------------- the JSON contract


def test_json_keys(v1_v15):
    _, doc = v1_v15
    assert set(doc) == {"a", "b", "same", "stages", "layers", "only_a", "only_b", "totals"}
    assert set(doc["a"]) == {"name", "source", "sets", "input"}
    assert doc["a"]["input"] == [224, 224, 3] and doc["a"]["source"].endswith("resnet50.arch")
    stage = doc["stages"][1]
    assert set(stage) == {"name", "a", "b"} and set(stage["a"]) == {"name", "size", "params", "macs"}
    assert stage["a"]["size"] == [56, 56, 256]
    layer = doc["layers"][0]
    assert set(layer) == {"a", "b", "kind", "changes"} and layer["kind"] == "conv"
    assert set(layer["changes"][0]) == {"field", "a", "b"}
    assert set(doc["totals"]) == {"a", "b", "delta"}
    assert set(doc["totals"]["a"]) == {"params", "trainable_params", "non_trainable_params", "macs", "layers"}


def test_level_layer_lists_every_size_change(tmp_path):
    a, b = str(SPECS / "resnet50.arch"), str(SPECS / "wide_resnet50_2.arch")
    short, full = run(a, b, "--set-a", "downsample_at=2").stdout, run(a, b, "--set-a", "downsample_at=2",
                                                                        "--level", "layer").stdout
    assert "more (--level layer lists them all)" in short and "more (" not in full
    assert full.count("\n") > short.count("\n")


# ---------------------------------------------------------------- errors are diagnostics


def test_a_missing_file_is_a_diagnostic_with_exit_2(tmp_path):
    result = run(str(tmp_path / "nope.arch"), str(SPECS / "resnet18.arch"))
    assert result.exit_code == 2
    assert "error[A004]: cannot read" in result.stderr and "Traceback" not in result.output
    result = run(str(tmp_path / "nope.arch"), str(SPECS / "resnet18.arch"), "--format", "json")
    assert result.exit_code == 2 and json.loads(result.stderr)[0]["code"] == "A004"


def test_a_spec_that_does_not_check_is_a_diagnostic_with_exit_2(tmp_path):
    bad = _write(tmp_path, "bad", "s1: conv 7x7, 16, stride=8\ns2: conv 9x9, 16\n")
    result = run(bad, str(SPECS / "resnet18.arch"))
    assert result.exit_code == 2 and "error[A201]" in result.stderr and "bad.arch:4:" in result.stderr
    result = run(bad, str(tmp_path / "nope.arch"))  # what is wrong with both sides, at once
    assert result.exit_code == 2 and "error[A201]" in result.stderr and "error[A004]" in result.stderr


def test_the_api_compares_two_specs_with_their_own_overrides():
    from archc.diff import diff_specs

    result = diff_specs(SPECS / "resnet50.arch", SPECS / "resnet50.arch", sets_b={"downsample_at": 2})
    assert not result.same and len([c for c in result.layers if c.arguments]) == 6
    assert sum(result.b.macs) - sum(result.a.macs) == 231_211_008


def test_trouble_the_command_group_would_report_with_exit_1_is_exit_2_here(monkeypatch):
    """Exit 1 means "different": an OSError or a spec nested too deeply must not exit 1."""
    import archc.cli

    def broken(*args, **kwargs):
        raise OSError(5, "Input/output error", "specs/resnet18.arch")

    monkeypatch.setattr(archc.cli, "_diff_side", broken)
    result = run(str(SPECS / "resnet18.arch"), str(SPECS / "resnet18.arch"))
    assert result.exit_code == 2 and "error[A004]: cannot read `specs/resnet18.arch`: Input/output error" \
        in result.stderr

    def deep(*args, **kwargs):
        raise RecursionError

    monkeypatch.setattr(archc.cli, "_diff_side", deep)
    result = run(str(SPECS / "resnet18.arch"), str(SPECS / "resnet18.arch"))
    assert result.exit_code == 2 and "error[A301]" in result.stderr


def test_bad_sets_are_usage_errors_that_name_the_side():
    a = str(SPECS / "resnet50.arch")
    result = run(a, a, "--set-b", "downsample_at")
    assert result.exit_code == 2 and "expected NAME=VALUE" in result.output
    result = run(a, a, "--set-b", "downsampel_at=2")
    assert result.exit_code == 2 and "B (" in result.output and "downsample_at" in result.output
    result = run(a, str(SPECS / "vgg11.arch"), "--set", "downsample_at=2")  # vgg11 has no such parameter
    assert result.exit_code == 2 and "B (" in result.output


def test_a_model_that_cannot_be_read_is_a_diagnostic():
    result = run(str(SPECS / "resnet50.arch"), "no_such_module_here:resnet50")
    assert result.exit_code == 2 and "error[A503]" in result.stderr
    result = run("model.onnx", str(SPECS / "resnet50.arch"))
    assert result.exit_code == 2 and "error[A004]" in result.stderr and "model.onnx" in result.stderr


def test_a_model_side_through_a_reader(monkeypatch):
    """A model side: `archc.readers.read_source(source)` gives a FlatNetwork; its stages are its paths' heads."""
    import archc.readers

    plan = archc.check(SPECS / "resnet18.arch")
    net = flat_of_plan(plan)
    net.source = "stand.in:resnet18"
    monkeypatch.setattr(archc.readers, "read_source", lambda source: net)
    result = run(str(SPECS / "resnet18.arch"), "stand.in:resnet18")
    assert result.exit_code == 0, result.output
    result = run(str(SPECS / "resnet18.arch"), "stand.in:resnet18", "--set-b", "classes=10")
    assert result.exit_code == 2 and "error[A551]" in result.stderr

    def unsupported(source):
        raise Unsupported("`torch.nn.functional.interpolate(mode='area')`", "decoder.up1")

    monkeypatch.setattr(archc.readers, "read_source", unsupported)
    result = run(str(SPECS / "resnet18.arch"), "stand.in:resnet18")
    assert result.exit_code == 2 and "error[A552]" in result.stderr and "`decoder.up1`" in result.stderr


# ---------------------------------------------------------------- one machinery, load_weights kept strict


def test_a_flat_network_compares_like_its_plan():
    a = archc.check(SPECS / "resnet50.arch")
    b = archc.check(SPECS / "resnet50.arch", downsample_at=2)
    from_plans = diff(side_of_plan(a), side_of_plan(b))
    flat_b: FlatNetwork = flat_of_plan(b)
    from_flat = diff(side_of_plan(a), side_of_flat(flat_b))
    assert [(c.a, c.b, c.changes) for c in from_flat.layers] == [(c.a, c.b, c.changes) for c in from_plans.layers]
    assert sum(from_flat.b.macs) == b.macs and sum(from_flat.b.params) == b.total_params
    assert [row.b[0] for row in from_flat.stages] == [row.b[0] for row in from_plans.stages]


def test_load_weights_matching_stays_strict():
    """The tolerant mode is asked for; the default still refuses v1 against v1.5 at the moved stride, and its
    graphs still hold the weighted layers only."""
    a = archc.check(SPECS / "resnet50.arch")
    b = archc.check(SPECS / "resnet50.arch", downsample_at=2)
    strict = match(graph_of_plan(a), graph_of_plan(b))
    assert strict.pairs is None and strict.mismatch.a.label == "conv3_x.0.conv1"
    assert len(graph_of_plan(a).layers) == sum(bool(n.weights()) for n in a.nodes)
    same = match(graph_of_plan(a), graph_of_plan(a))
    assert same.pairs == list(range(len(same.a.layers)))
    tolerant = match(graph_of_plan(a, every_layer=True), graph_of_plan(b, every_layer=True), tolerant=True)
    assert tolerant.pairs == list(range(len(a.nodes))) and tolerant.only_b == []


def test_the_docs_example_is_what_diff_prints(monkeypatch):
    doc = (ROOT / "docs" / "diff.md").read_text(encoding="utf-8")
    command = "archc diff specs/resnet50.arch specs/resnet50.arch --set-b downsample_at=2"
    shown = doc.split(f"$ {command}\n", 1)[1].split("\n```", 1)[0]
    monkeypatch.chdir(ROOT)  # the example's paths are the repository's
    assert run(*command.split()[2:]).stdout.rstrip("\n") == shown


def test_one_block_widened_among_identical_blocks_is_a_change_not_an_insertion(tmp_path):
    unit = "  residual:\n    conv 3x3, 16, same, bn, relu\n    conv 3x3, 16, same, bn\n  relu\n"
    wide = "  residual:\n    conv 3x3, 32, same, bn, relu\n    conv 3x3, 16, same, bn\n  relu\n"
    a = _write(tmp_path, "a", "stage1:\n" + unit * 5 + "head: globalavgpool; dense 10\n")
    b = _write(tmp_path, "b", "stage1:\n" + unit * 2 + wide + unit * 2 + "head: globalavgpool; dense 10\n")
    code, doc = run_json(a, b)
    assert code == 1 and doc["only_a"] == doc["only_b"] == []
    assert [(layer["a"], layer["b"]) for layer in doc["layers"] if layer["changes"][0]["field"] == "filters"] \
        == [("stage1.conv5", "stage1.conv5")]
