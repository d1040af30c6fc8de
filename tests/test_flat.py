"""archc.flat: a plan as a flat network, re-resolved by archc's own rules, is the same plan."""

from pathlib import Path

import pytest

import archc
from archc.flat import FlatLayer, Resolutions, flat_of_plan, layer_signature, same_layers

SPECS = sorted(p for p in (Path(__file__).parent.parent / "specs").glob("*.arch") if p.stem != "blocks")


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_a_plan_as_a_flat_network_resolves_to_the_same_shapes(spec):
    plan = archc.check(spec)
    flat = flat_of_plan(plan)
    flat.resolutions = Resolutions()  # resolved again by archc's rules (flat_of_plan keeps the plan's)
    assert [shape for *_, shape in layer_signature(flat)] == [node.shape for node in plan.nodes]
    assert same_layers(flat, flat) is None
    # resolving the plan's arguments again gives them back, as `archc import`'s check compares them: what
    # flat_of_plan relies on when it keeps the plan's own resolution
    assert [repr(sorted(args.canonical(ins).items())) for args, ins, _ in flat.resolved()] == \
        [repr(sorted(node.args.canonical(list(node.in_shapes)).items())) for node in plan.nodes]


def test_the_first_difference_is_named():
    flat = flat_of_plan(archc.check("input 8x8x3\nconv 3x3, 4, same\nrelu\n"))
    other = flat_of_plan(archc.check("input 8x8x3\nconv 3x3, 5, same\nrelu\n"))
    assert "layer 0 differs" in same_layers(flat, other)
    other.layers.append(FlatLayer("relu", {}, (1,)))
    flat.layers[0] = other.layers[0]
    assert same_layers(flat, other) == "2 layers and 3 layers"


def test_a_flat_network_matches_its_plan_through_the_structure():
    from archc.flat import graph_of_flat
    from archc.match import graph_of_plan, match

    plan = archc.check(Path(__file__).parent.parent / "specs" / "densenet121.arch")
    graph = graph_of_flat(flat_of_plan(plan))
    result = match(graph_of_plan(plan), graph)
    assert result.mismatch is None and len(graph.layers) == 242
    assert [layer.label for layer in graph.layers] == [node.name for node in plan.nodes if node.weights()]


def test_a_layer_edited_after_it_was_resolved_is_resolved_again():
    """resolved() keeps each layer's resolution (an import resolves its network several times; flat_of_plan keeps
    the plan's): a layer edited in place or given new arguments is never read from what was kept."""
    flat = flat_of_plan(archc.check("input 8x8x3\nconv 3x3, 4, same\nrelu\n"))
    assert [shape for *_, shape in flat.resolved()] == [(8, 8, 4), (8, 8, 4)]
    flat.layers[0].args["filters"] = 6  # in place
    assert [shape for *_, shape in flat.resolved()] == [(8, 8, 6), (8, 8, 6)]
    flat.layers[0].args = {**flat.layers[0].args, "stride": (2, 2)}
    assert [shape for *_, shape in flat.resolved()] == [(4, 4, 6), (4, 4, 6)]
    flat.layers[1].op = "dropout"  # another kind, with its own arguments
    flat.layers[1].args = {"rate": 0.25}
    assert flat.resolved()[1][0].model_dump() == {"rate": 0.25}
