"""`check` on random valid specs: it accepts them, agrees with the oracle's shapes, and its plans hold together."""

from __future__ import annotations

from hypothesis import event, given
from profiles import budget
from strategies import GeneratedSpec, specs
from support import check_error, check_plan_invariants, within

import archc
from archc.diagnostics import ArchcError


@budget(1000)
@given(specs())
def test_valid_specs_check(generated: GeneratedSpec):
    for feature in sorted(generated.features):
        event(feature)
    try:
        with within():
            plan = archc.check(generated.text)
    except ArchcError as e:
        check_error(e, generated.text, positioned=True)
        raise AssertionError(f"a spec valid by construction was refused:\n{e.render()}") from None
    assert plan.output_shape == generated.output_shape
    check_plan_invariants(plan)


@budget(300)
@given(specs(max_depth=3, max_lines=6))
def test_deeper_specs_check(generated: GeneratedSpec):
    with within():
        plan = archc.check(generated.text)
    assert plan.output_shape == generated.output_shape
    check_plan_invariants(plan)


@budget(300)
@given(specs())
def test_input_override_keeps_the_plan_consistent(generated: GeneratedSpec):
    """The same spec at another input size either checks (its expected sizes are then not enforced) or fails
    with a positioned error; it never crashes."""
    try:
        with within():
            plan = archc.check(generated.text, input=(13, 11, 5))
    except ArchcError as e:
        check_error(e, generated.text, positioned=True)
        return
    check_plan_invariants(plan)
