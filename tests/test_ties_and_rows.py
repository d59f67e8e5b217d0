"""`same_as` ties and `zero_rows`: a tensor holding another's values, rows set to zero.

Both must hold on every path values take: the whole tensor, chunks, slices, and the tasks
that write checkpoints.
"""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file

import vsconf
from vsconf.draw import generate, generate_chunks
from vsconf.errors import MatchError, SpecError
from vsconf.spec import parse_spec


def plan(rules: str, tensors: dict[str, tuple], layout: str = "torch"):
    spec = parse_spec(f"vsconf: 1\nseed: 3\nlayout: {layout}\nrules:\n{rules}", "s.yaml")
    return vsconf.plan({name: np.zeros(shape, np.float32) for name, shape in tensors.items()}, spec)


TIED = "  - match: lm_head.weight\n    init: {same_as: wte.weight}\n  - match: '*'\n    init: {normal: {std: 0.02}}\n"


def test_a_tie_holds_exactly_the_other_tensor_s_values_on_every_path():
    the_plan = plan(TIED, {"wte.weight": (50, 16), "lm_head.weight": (50, 16), "other.weight": (50, 16)})
    head, wte, other = the_plan.entry("lm_head.weight"), the_plan.entry("wte.weight"), the_plan.entry("other.weight")
    assert head.same_as == "wte.weight" and head.fans_from == "same_as wte.weight"
    assert generate(head).tobytes() == generate(wte).tobytes() != generate(other).tobytes()
    assert b"".join(c.tobytes() for c in generate_chunks(head, step=37)) == generate(wte).tobytes()
    np.testing.assert_array_equal(vsconf.slice_values(head, (slice(4, 9), 3)), generate(wte)[4:9, 3])


def test_a_chain_of_ties_is_followed():
    rules = "  - match: a\n    init: {same_as: b}\n  - match: b\n    init: {same_as: c}\n  - match: c\n    init: he_normal\n"
    the_plan = plan(rules, {"a": (4, 4), "b": (4, 4), "c": (4, 4)})
    assert generate(the_plan.entry("a")).tobytes() == generate(the_plan.entry("c")).tobytes()


@pytest.mark.parametrize(
    "rules, tensors, message",
    [
        ("  - match: a\n    init: {same_as: nowhere}\n", {"a": (4,)}, "tensor 'a': same_as: the model has no tensor 'nowhere'"),
        (
            "  - match: a\n    init: {same_as: b}\n  - match: b\n    init: {same_as: a}\n",
            {"a": (4,), "b": (4,)},
            "tensor 'a': same_as: the ties form a circle: 'a' -> 'b' -> 'a'",
        ),
        (
            "  - match: a\n    init: {same_as: b}\n  - match: b\n    init: zeros\n",
            {"a": (4, 2), "b": (2, 4)},
            "tensor 'a': same_as: 'b' is float32[2, 4], this tensor float32[4, 2]; a tie holds one tensor's values",
        ),
        (
            "  - match: a\n    init: {same_as: b}\n  - match: b\n    init: keep\n",
            {"a": (4,), "b": (4,)},
            "tensor 'a': same_as: 'b' is not filled by any rule (keep), so it has no values to hold",
        ),
        (
            "  - match: a\n    zero_rows: [4]\n    init: zeros\n",
            {"a": (4, 3)},
            "tensor 'a': zero_rows: row 4 is out of range for a tensor of 4 rows (shape [4, 3])",
        ),
        ("  - match: a\n    zero_rows: [0]\n    init: zeros\n", {"a": ()}, "tensor 'a': zero_rows: a scalar has no rows"),
    ],
)
def test_ties_and_rows_that_cannot_be_are_errors_naming_the_tensor(rules, tensors, message):
    with pytest.raises(MatchError) as caught:
        plan(rules, tensors)
    assert any(message in problem.format() for problem in caught.value.problems), [p.format() for p in caught.value.problems]


def test_zero_rows_with_keep_is_a_spec_error():
    with pytest.raises(SpecError, match=r"rules\[0\]\.zero_rows: zero_rows needs an init that fills the tensor"):
        parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: a\n    zero_rows: [0]\n    init: keep\n")


@pytest.mark.parametrize("init", ["{normal: {mean: 1, std: 0.5}}", "ones", "he_uniform"])
def test_zero_rows_are_zero_on_every_path_and_the_rest_is_the_fill(init, tmp_path):
    rows = "  - match: embed.weight\n    zero_rows: [0, -1, 7]\n    init: " + init + "\n"
    the_plan = plan(rows, {"embed.weight": (300, 700)})
    entry = the_plan.entry("embed.weight")
    assert entry.zero_rows == (0, 7, 299)
    whole = generate(entry)
    assert not whole[[0, 7, 299]].any()
    plain = plan("  - match: embed.weight\n    init: " + init + "\n", {"embed.weight": (300, 700)}).entry("embed.weight")
    expected = generate(plain)
    expected[[0, 7, 299]] = 0
    assert whole.tobytes() == expected.tobytes()  # the other rows are exactly the untouched fill
    assert b"".join(c.tobytes() for c in generate_chunks(entry, step=1000)) == whole.tobytes()
    for index in [(slice(5, 9), slice(None)), (7, slice(3, 8)), (slice(None), 650), (slice(298, 300), slice(0, 700))]:
        np.testing.assert_array_equal(vsconf.slice_values(entry, index), whole[index])
    # the tasks that write checkpoints take the same path
    manifest = tmp_path / "m.shapes.json"
    manifest.write_text('{"tensors": {"embed.weight": {"shape": [300, 700]}}}')
    spec = tmp_path / "s.yaml"
    spec.write_text("vsconf: 1\nseed: 3\nlayout: torch\nrules:\n" + rows)
    vsconf.apply(manifest, spec, tmp_path / "out.safetensors", task_size="256KiB")
    assert load_file(str(tmp_path / "out.safetensors"))["embed.weight"].tobytes() == whole.tobytes()
