"""The inference pass: expansion, names, shapes, parameters, and the diagnostics it collects."""

import pytest

import archc
from archc.diagnostics import ArchcError


def plan_of(text, **overrides):
    return archc.check(text if text.startswith("network") or "\n" in text else text, **overrides)


def names(plan):
    return [n.name for n in plan.nodes]


def codes(text, **overrides):
    with pytest.raises(ArchcError) as err:
        archc.check(text, **overrides)
    return [d.code for d in err.value.diagnostics], err.value


def test_lecture_cnns():
    small = "input 32x32x3\nconv 3x3, 64, relu\n{pool}flatten\ndense 32, relu\ndense 10, softmax\n"
    assert archc.check(small.format(pool="")).total_params == 1_845_354
    assert archc.check(small.format(pool="maxpool 2x2\n")).total_params == 462_954
    deeper = ("input 32x32x3\nconv 3x3, 64, same, relu; maxpool 2x2\nconv 3x3, 64, same, relu; maxpool 2x2\n"
              "flatten; dense 128, relu; dense 10, softmax\n")
    assert archc.check(deeper).total_params == 564_426


def test_names_follow_scopes_and_prefixes():
    plan = archc.check("input 8x8x3\nblock b(w):\n  conv 3x3, w, same, bn, relu\n  conv 3x3, w, same, bn\n"
                       "s1: conv 3x3, 4, same; b(4) x 2\nflatten\ndense 2\n")
    assert names(plan) == [
        "s1.conv",
        "s1.0.conv1", "s1.0.bn1", "s1.0.relu", "s1.0.conv2", "s1.0.bn2",
        "s1.1.conv1", "s1.1.bn1", "s1.1.relu", "s1.1.conv2", "s1.1.bn2",
        "flatten", "fc",
    ]
    assert [n.stage for n in plan.nodes][:2] == ["s1", "s1"] and plan.nodes[-1].stage is None


def test_single_call_in_a_scope_adds_no_index():
    plan = archc.check("input 8x8x3\nblock b(w): conv 3x3, w; relu\nrow 6x6x5: b(5)\n")
    assert names(plan) == ["row.conv", "row.relu"]


def test_top_level_calls_are_named_after_the_block():
    plan = archc.check("input 8x8x3\nblock b(w): conv 1x1, w\nb(2)\nb(3)\n")
    assert names(plan) == ["b1.conv", "b2.conv"]


def test_a_block_called_again_binds_and_sizes_each_call_from_its_own_values():
    """infer remembers a line's binding by the values it reads, and a layer's sizes by its arguments and input:
    each call below differs from the one before in exactly one of them."""
    plan = archc.check("input 8x8x3\nparam act=relu\nblock b(w, a=act, k=3):\n  conv k, w, same, a\n"
                       "b(4)\nb(4)\nb(8)\nb(4)\nb(4, a=sigmoid)\nb(4, k=1)\nb(4)\n")
    convs = [n for n in plan.nodes if n.op == "conv"]
    ins = [3, 4, 4, 8, 4, 4, 4]
    widths = [4, 4, 8, 4, 4, 4, 4]
    kernels = [3, 3, 3, 3, 3, 1, 3]
    assert [n.in_shapes[0][2] for n in convs] == ins and [n.shape[2] for n in convs] == widths
    assert [n.args.kernel for n in convs] == [(k, k) for k in kernels]
    assert [n.trainable for n in convs] == [k * k * c * w + w for c, w, k in zip(ins, widths, kernels, strict=True)]
    assert [n.op for n in plan.nodes if n.op != "conv"] == ["relu"] * 4 + ["sigmoid"] + ["relu"] * 2
    # 1, 1.0 and true are equal in Python but not one value to the language: each call binds as it would alone
    alone = [archc.check(f"input 8x8x3\nblock b(w):\n  dense w\nflatten\nb({w})\n").nodes[-1].args
             for w in ("1", "1.0", "true")]
    together = archc.check("input 8x8x3\nblock b(w):\n  dense w\nflatten\nb(1)\nb(1.0)\nb(true)\n").nodes
    assert [n.args for n in together[1:]] == alone


def test_residual_identity_and_projection():
    text = ("input 16x16x8\nblock r(w, s=1):\n  residual:\n    conv 3x3, w, stride=s, same, bn, relu\n"
            "    conv 3x3, w, same, bn\n  relu\nr(8)\nr(16, s=2)\n")
    plan = archc.check(text)
    add1 = plan.node("r1.add")
    assert add1.inputs == ("r1.bn2", "input")
    assert plan.node("r2.shortcut.conv").args.stride == (2, 2)
    assert plan.node("r2.shortcut.conv").args.bias is False
    assert plan.node("r2.add").inputs == ("r2.bn2", "r2.shortcut.bn")
    assert plan.output_shape == (8, 8, 16)


def test_projection_without_batchnorm_keeps_its_bias():
    plan = archc.check("input 8x8x2\nresidual: conv 3x3, 4, same\n")
    conv = plan.node("shortcut.conv")
    assert conv.args.bias is True and conv.params == 2 * 4 + 4
    assert "shortcut.bn" not in names(plan)


def test_explicit_shortcut_and_concat_residual():
    plan = archc.check("input 8x8x2\nresidual:\n  conv 3x3, 4, same\nshortcut:\n  conv 1x1, 4; bn\n"
                       "residual concat: conv 3x3, 3, same\n")
    assert plan.node("add").inputs == ("conv1", "shortcut.bn")
    assert plan.node("concat").inputs == ("add", "conv2")
    assert plan.output_shape == (8, 8, 7)


def test_inception_branches():
    text = ("input 28x28x192\nblock inception(c1, r3, c3, r5, c5, pp):\n  concat:\n"
            "    conv 1x1, c1, relu\n    conv 1x1, r3, relu; conv 3x3, c3, same, relu\n"
            "    conv 1x1, r5, relu; conv 5x5, c5, same, relu\n    maxpool 3x3, stride=1, same; conv 1x1, pp, relu\n"
            "inception_3a 28x28x256 : inception(64, 96, 128, 16, 32, 32)\n")
    plan = archc.check(text)
    assert plan.output_shape == (28, 28, 256)
    assert plan.total_params == 163_696  # GoogLeNet's 3a row (Table 1 rounds it to 159K)
    assert plan.node("inception_3a.concat").inputs == (
        "inception_3a.branch1.relu", "inception_3a.branch2.relu2", "inception_3a.branch3.relu2",
        "inception_3a.branch4.relu")


def test_block_reads_its_input_shape():
    plan = archc.check("input 8x8x64\nblock t(): bn; conv 1x1, in.c // 2; avgpool 2x2\nt()\n")
    assert plan.output_shape == (4, 4, 32)


def test_expressions_and_parameters():
    plan = archc.check("input 8x8x3\nparam w=4, deep=true\nconv 3x3, 2*w if deep else w, stride=max(1, w // 4)\n")
    assert plan.output_shape == (6, 6, 8)
    plan = archc.check("input 8x8x3\nparam w=4, deep=true\nconv 3x3, 2*w if deep else w\n", deep=False, w=3)
    assert plan.output_shape == (6, 6, 3)
    assert plan.params == {"w": 3, "deep": False}


def test_overrides_from_strings_and_input():
    plan = archc.check("input 224x224x3\nparam classes=1000\nconv 3x3, 8; globalavgpool; dense classes\n",
                       classes="10", input="32x32x3")
    assert plan.input_shape == (32, 32, 3) and plan.output_shape == (10,)
    plan = archc.check("input 784\ndense 10\n", input=(100,))
    assert plan.node("fc").params == 1010


def test_flat_input():
    plan = archc.check("input 784\ndense 128, relu; dropout 20%; dense 10, softmax\n")
    assert plan.total_params == 784 * 128 + 128 + 1290


def test_expected_sizes_are_checked():
    ok = "input 32x32x3\ns 16x16 : conv 3x3, 8, stride=2, same\nt 16x16x8 : relu\nfc 10: flatten; dense 10\n"
    archc.check(ok)
    found, err = codes("input 32x32x3\ns 15x15 : conv 3x3, 8, stride=2, same\n")
    assert found == ["A204"]
    assert "gives 16x16x8, but the spec expects 15x15" in err.diagnostics[0].message
    found, _ = codes("input 32x32x3\nconv 3x3, 8 -> 30x30x9\n")
    assert found == ["A204"]


def test_expected_sizes_skip_when_the_input_is_overridden():
    spec = "input 32x32x3\ns 16x16 : conv 3x3, 8, stride=2, same\n"
    assert archc.check(spec).output_shape == (16, 16, 8)  # at its own input the size holds
    plan = archc.check(spec, input="64x64x3")  # the stage's 16x16 is the paper's, for its input: not checked
    assert plan.input_shape == (64, 64, 3) and plan.output_shape == (32, 32, 8)
    found, _ = codes("input 64x64x3\ns 16x16 : conv 3x3, 8, stride=2, same\n")  # written, it is checked
    assert found == ["A204"]


def test_independent_errors_are_all_reported_and_downstream_stays_silent():
    text = "input 8x8x3\nconv 9x9, 4\nrelu\nconv 3x3, 4\nfoo 3\nbar(2)\ndense 3\n"
    found, err = codes(text)
    assert found == ["A201", "A101", "A102"]  # `dense 3` reads an unknown shape: silent


def test_unknown_names_suggest():
    found, err = codes("input 8x8x3\nparam width=4\nconv 3x3, widht\n")
    assert found == ["A103"] and err.diagnostics[0].help == "did you mean `width`?"
    found, err = codes("input 8x8x3\ncovn 3x3, 4\n")
    assert found == ["A101"] and "`conv`" in err.diagnostics[0].help
    found, err = codes("input 8x8x3\nconv 3x3, 4, strides=2\n")
    assert found == ["A111"] and "`stride`" in err.diagnostics[0].help


def test_block_signature_errors():
    block = "input 8x8x3\nblock b(w, s=1): conv 3x3, w, stride=s\n"
    assert codes(block + "b()\n")[0] == ["A106"]
    assert codes(block + "b(1, 2, 3)\n")[0] == ["A106"]
    assert codes(block + "b(1, t=2)\n")[0] == ["A106"]


def test_recursion_is_an_error_not_a_hang():
    found, err = codes("input 8x8x3\nblock a(): b()\nblock b(): a()\na()\n")
    assert found == ["A109"] and "a -> b -> a" in err.diagnostics[0].message


def test_layer_limit_fails_fast():
    found, _ = codes("input 8x8x3\nrelu x 1000000000\n")
    assert found == ["A301"]
    found, _ = codes("input 8x8x3\n(relu x 1000) x 1000\n", max_layers=5000)
    assert found == ["A301"]


def test_huge_parameter_counts_are_reported_not_allocated():
    plan = archc.check("input 1024\ndense 1000000000; dense 1000\n")
    assert plan.total_params == 1024 * 10**9 + 10**9 + 10**12 + 1000


def test_bias_off_before_batchnorm_unless_asked():
    plan = archc.check("input 4x4x2\nconv 3x3, 4, bn\nconv 1x1, 4, bias=true, bn\n")
    assert plan.node("conv1").args.bias is False and plan.node("conv2").args.bias is True


def test_depthwise_separable():
    plan = archc.check("input 112x112x32\nconv 3x3, dw, same, bn, relu\nconv 1x1, 64, bn, relu\n")
    assert plan.node("conv1").args.groups == 32 and plan.node("conv1").params == 288
    assert plan.output_shape == (112, 112, 64)


def test_no_input_is_an_error():
    assert codes("conv 3x3, 4\n")[0] == ["A110"]


def test_unknown_override_is_a_usage_error():
    assert codes("input 8x8x3\nparam k=1\nrelu\n", kk=2)[0] == ["A108"]


def test_plan_json_contract():
    plan = archc.check("network tiny\ninput 8x8x3\nconv 3x3, 4, bn, relu\nflatten\ndense 2\n")
    data = plan.to_json()
    for key in ("name", "input", "output", "params", "trainable_params", "macs", "layers"):
        assert key in data
    assert data["input"] == [8, 8, 3] and data["output"] == [2]
    layer = data["layers"][0]
    assert {k: layer[k] for k in ("name", "op", "shape", "params", "macs")} == {
        "name": "conv", "op": "conv", "shape": [6, 6, 4], "params": 108, "macs": 6 * 6 * 4 * 27}


def test_an_inlined_call_numbers_the_calls_of_its_body():
    plan = archc.check("input 8x8x4\nblock d(k): residual concat: conv 3x3, k, same\nblock db(n): d(2) x n\n"
                       "block one(): d(1)\nst: db(3)\nst2: one()\n")
    assert names(plan) == ["st.0.conv", "st.0.concat", "st.1.conv", "st.1.concat", "st.2.conv", "st.2.concat",
                           "st2.conv", "st2.concat"]


# ---------------------------------------------------------------- `call_index` (issue 12: drop-path rates over blocks)

DROP_PATH_SPEC = """input 8x8x4
param rate=0.1, blocks=5
block unit(r=rate):
  residual:
    conv 3x3, 4, same
    stochastic_depth r * call_index / (blocks - 1)
block stage(n):
  unit() x n
s1 : stage(2)
s2 : conv 1x1, 4; stage(3)
"""


def rates(plan):
    return {n.name: n.args.rate for n in plan.nodes if n.op == "stochastic_depth"}


def test_call_index_counts_a_blocks_calls_across_stages():
    plan = archc.check(DROP_PATH_SPEC)
    # torchvision's ConvNeXt: sd_prob = stochastic_depth_prob * block_id / (total_blocks - 1.0)
    assert rates(plan) == {f"{stage}.{i}.stochastic_depth": 0.1 * block / 4
                           for block, (stage, i) in enumerate([("s1", 0), ("s1", 1), ("s2", 0), ("s2", 1), ("s2", 2)])}


def test_call_index_is_per_block_and_seen_by_defaults():
    plan = archc.check("input 4x4x2\nblock a(k=call_index + 1):\n  conv 1x1, k\n"
                       "block b():\n  conv 1x1, 10 + call_index\na(); b(); a(); b(); b()\n")
    assert [n.shape[-1] for n in plan.nodes] == [1, 10, 2, 11, 12]


def test_call_index_inside_a_nested_block_is_the_inner_blocks():
    plan = archc.check("input 4x4x2\nblock inner():\n  conv 1x1, 1 + call_index\n"
                       "block outer():\n  inner(); conv 1x1, 100 + call_index\nouter(); outer()\n")
    assert [n.shape[-1] for n in plan.nodes] == [1, 100, 2, 101]


def test_names_shadow_call_index():
    block = "block u(call_index=7):\n  conv 1x1, call_index\n"
    assert archc.check(f"input 4x4x2\n{block}u(); u()\n").nodes[1].shape == (4, 4, 7)
    network = "input 4x4x2\nparam call_index=3\nblock v():\n  conv 1x1, call_index\nv(); v()\n"
    assert [n.shape[-1] for n in archc.check(network).nodes] == [3, 3]


def test_a_block_parameter_may_share_a_network_parameters_name():
    # block parameters shadow network parameters (the bodies' names are merged, not passed as keywords twice)
    plan = archc.check("input 4x4x2\nparam w=3\nblock b(w):\n  conv 1x1, w\nb(5)\n")
    assert plan.nodes[0].shape == (4, 4, 5)


def test_call_index_outside_a_block_is_a_diagnostic():
    for line in ("conv 1x1, 1 + call_index", "conv 1x1, call_index"):  # in arithmetic, as an argument
        found, err = codes(f"input 4x4x2\n{line}\n")
        assert found == ["A103"] and "`call_index`" in err.diagnostics[0].message
        assert "inside a block only" in err.diagnostics[0].help
