"""A stage row that is one call of a block which itself calls blocks (`conv3_x 28x28 : bottleneck_stage(128, 4)`)
names the inner calls `conv3_x.0`, `conv3_x.1`, ... exactly as if the row had written the calls itself."""

import archc

BLOCKS = """
block unit(w):
  conv 3x3, w, same, relu
block two(w):
  unit(w)
  unit(w)
block stage(w, n):
  unit(w)
  unit(w) x (n - 1)
block wrapper(w):
  stage(w, 3)
"""


def names(body: str) -> list[str]:
    plan = archc.check(f'network t "t"\ninput 8x8x3\n{BLOCKS}\n{body}\n')
    return [n.name for n in plan.nodes]


def test_a_stage_block_numbers_its_own_calls():
    assert names("s 8x8 : stage(4, 3)") == ["s.0.conv", "s.0.relu", "s.1.conv", "s.1.relu", "s.2.conv", "s.2.relu"]


def test_the_same_names_as_the_calls_written_out():
    assert names("s 8x8 : stage(4, 3)") == names("s 8x8 : unit(4); unit(4) x 2")


def test_a_single_call_inside_an_inlined_call_stays_inline():
    assert names("s : wrapper(4)") == names("s : stage(4, 3)")


def test_a_block_of_layers_alone_in_a_stage_keeps_them_at_the_stage():
    assert names("s : unit(4)") == ["s.conv", "s.relu"]
    assert names("s : two(4)") == ["s.0.conv", "s.0.relu", "s.1.conv", "s.1.relu"]
