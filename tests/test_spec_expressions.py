"""Expressions, vars and `when` in specs; the matrix, formula and parts inits through plan,
apply, slices, locks and the command line (#21).

Values are checked against what they must equal: a part against the same init on a tensor
of the part's shape and name, an expression's value against the arithmetic written out
here, a formula against NumPy on the same indices, a slice against the whole.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import vsconf
from vsconf.draw import draw_of, generate
from vsconf.engine import make_plan
from vsconf.matching import TensorInfo
from vsconf.slices import slice_values

HEAD = "vsconf: 1\nseed: 5\nlayout: torch\n"


def spec(body: str, **kw) -> vsconf.Spec:
    return vsconf.parse_spec(HEAD + textwrap.dedent(body), "init.yaml", **kw)


def tensors(**shapes) -> list[TensorInfo]:
    return [TensorInfo(name.replace("__", "."), shape, np.dtype(np.float32)) for name, shape in shapes.items()]


def plan_of(body: str, shapes: dict, **kw) -> vsconf.Plan:
    return make_plan([TensorInfo(n, s, np.dtype(np.float32)) for n, s in shapes.items()], spec(body, **kw))


# --------------------------------------------------------------------------- vars


VARS_SPEC = """\
vars: {initializer_range: 0.02, n_layer: 12, proj: "initializer_range / sqrt(2 * n_layer)"}
rules:
  - match: w
    init: {normal: {std: proj}}
"""


@pytest.mark.parametrize(
    "given, n_layer",
    [
        (None, 12), ({"n_layer": 3}, 3), ({"n_layer": True}, 1), ({"other": 1.5}, 12),
        # a model config's to_dict() as it is: strings, lists, mappings and None are left out
        ({"n_layer": 6, "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "pad_token_id": None, "id2label": {}}, 6),
    ],
)
def test_given_vars_override_the_spec_and_later_vars_read_them(given, n_layer):
    plan = plan_of(VARS_SPEC, {"w": (4, 4)}, vars=given)
    assert plan.entry("w").std == pytest.approx(0.02 / math.sqrt(2 * n_layer), rel=1e-15)
    assert plan.vars["n_layer"] == n_layer


def test_the_vars_are_in_the_canonical_form_so_the_digest_follows_them():
    a, b = spec(VARS_SPEC), spec(VARS_SPEC, vars={"n_layer": 24})
    assert a.sha256 != b.sha256
    assert vsconf.parse_spec(b.canonical_json()).sha256 == b.sha256  # the canonical form is a spec


@pytest.mark.parametrize(
    "given, message",
    [
        ({"fan_in": 3}, "a name vsconf gives itself"),
        ({"1x": 3}, "is not a name"),
        ({"x": float("nan")}, "finite number"),
        ({"x": 2**60}, "integer range"),
        ({"x": object()}, "finite number"),
    ],
)
def test_bad_given_vars_are_refused_by_name(given, message):
    with pytest.raises(ValueError, match=message):
        spec(VARS_SPEC, vars=given)


@pytest.mark.parametrize(
    "text, where, message",
    [
        ('vars: {a: "b + 1", b: 2}', "4:12", "unknown name 'b'"),
        ("vars: {fan_in: 2}", "4:8", "a name vsconf gives itself"),
        ('vars: {a: "1 / 0"}', "4:14", "division by zero"),
        ('vars: {a: "9**9**9**9"}', "4:16", "overflows"),
        ('vars: {a: "__import__(1)"}', "", ""),
    ],
)
def test_bad_vars_are_spec_errors_at_their_character(text, where, message):
    with pytest.raises(vsconf.SpecError) as info:
        spec(text + "\nrules:\n  - match: w\n    init: zeros\n")
    first = str(info.value.problems[0])
    assert first.startswith("init.yaml:" + where) and message in first


def test_when_leaves_a_rule_out_and_it_may_then_match_nothing():
    body = """\
    vars: {jax_mode: 0, num_classes: 1000}
    rules:
      - match: head.bias
        when: jax_mode
        init: {constant: "-log(num_classes)"}
      - match: nothing.here
        when: "jax_mode and num_classes < 10"
        init: zeros
      - match: head.bias
        init: zeros
    """
    assert plan_of(body, {"head.bias": (10,)}).entry("head.bias").value == 0.0
    assert plan_of(body.replace("when: jax_mode", "when: 0"), {"head.bias": (10,)}).entry("head.bias").value == 0.0
    plan = plan_of(body, {"head.bias": (10,)}, vars={"jax_mode": True})
    assert plan.entry("head.bias").value == -math.log(1000)
    # once its `when` holds, the rule naming no tensor is active again, and an error
    with pytest.raises(vsconf.MatchError, match="matches no tensor"):
        plan_of(body, {"head.bias": (10,)}, vars={"jax_mode": 1, "num_classes": 5})


# --------------------------------------------------------------------------- per tensor


def test_regex_groups_and_tensor_names_are_numbers_per_tensor():
    body = r"""
    rules:
      - match: 're:layers\.(?P<layer>\d+)\.wo'
        init: {truncated_normal: {std: "0.02 / sqrt(2 * (layer + 1))", cutoff: 3}}
      - match: 're:layers\.(?P<layer>\d+)\.wq'
        init: {uniform: {low: "-1 / sqrt(fan_in)", high: "1 / sqrt(fan_in) + layer * 0"}}
      - match: 'emb'
        init: {normal: {mean: "shape[1] - shape[-1]", std: "numel ** -0.5 * ndim"}}
    """
    shapes = {f"layers.{i}.wo": (8, 16) for i in range(3)} | {"layers.2.wq": (8, 25), "emb": (10, 4)}
    plan = plan_of(body, shapes)
    for i in range(3):
        entry = plan.entry(f"layers.{i}.wo")
        assert entry.std == 0.02 / math.sqrt(2 * (i + 1)) and entry.bounds == (-3.0, 3.0)
        assert entry.expressions == (("init.truncated_normal.std", "0.02 / sqrt(2 * (layer + 1))", entry.std),)
    assert plan.entry("layers.2.wq").limit == pytest.approx(1 / 5)
    assert plan.entry("emb").std == pytest.approx(40**-0.5 * 2) and plan.entry("emb").mean is None


@pytest.mark.parametrize(
    "body, shapes, message",
    [
        # a group that is not an integer, read by an expression
        (r"""
         rules:
           - match: 're:(?P<layer>[a-z]+)\.w'
             init: {normal: {std: "0.1 * layer"}}
         """, {"abc.w": (2, 2)}, "captured 'abc' in 'abc.w', not an integer"),
        ("""
         rules:
           - match: w
             init: {normal: {std: "fan_in - 4"}}
         """, {"w": (3, 4)}, "'fan_in - 4' is 0.0; it must be > 0"),
        ("""
         rules:
           - match: w
             init: {uniform: {low: "fan_in", high: "fan_out"}}
         """, {"w": (3, 4)}, "high (3.0) must be above low (4.0)"),
        ("""
         rules:
           - match: w
             init: {truncated_normal: {std: 1, a: "fan_in", b: "fan_in + 1"}}
         """, {"w": (3, 8)}, "keep"),
        ("""
         rules:
           - match: w
             init: {normal: {std: 1}}
             zero_rows: ["shape[0]"]
         """, {"w": (3, 8)}, "row 3 is out of range"),
        ("""
         rules:
           - match: w
             init: {normal: {std: 1}}
             zero_rows: ["fan_in / 3"]
         """, {"w": (3, 8)}, "expected an integer"),
        ("""
         rules:
           - match: w
             init: {orthogonal: {gain: 1}}
         """, {"w": (7,)}, "orthogonal: Only tensors with 2 or more dimensions"),
        ("""
         rules:
           - match: w
             init: {identity: {gain: 1}}
         """, {"w": (2, 3, 3)}, "identity:"),
        ("""
         rules:
           - match: w
             init: {dirac: {groups: 3}}
         """, {"w": (4, 2, 3)}, "divisible by groups"),
        ("""
         rules:
           - match: w
             init: {formula: "log(i1)"}
         """, {"w": (2, 3)}, "log of"),
        ("""
         rules:
           - match: w
             parts: {axis: 0, sizes: [2, "fan_in"], inits: [zeros]}
         """, {"w": (5, 4)}, "add up to 6"),
        ("""
         rules:
           - match: w
             parts: {axis: 1, count: 3, inits: [zeros]}
         """, {"w": (5, 4)}, "does not divide into 3"),
        ("""
         rules:
           - match: w
             parts: {axis: 2, count: 1, inits: [zeros]}
         """, {"w": (5, 4)}, "axis 2 is out of range"),
        ("""
         rules:
           - match: w
             parts: {axis: 0, count: 4, inits: [zeros, ones, zeros]}
         """, {"w": (8, 4)}, "3 inits for 4 parts"),
        ("""
         rules:
           - match: w
             init: {normal: {std: "base_fan_in"}}
         """, {"w": (8, 4)}, "unknown name 'base_fan_in'"),
    ],
)
def test_per_tensor_problems_name_the_tensor(body, shapes, message):
    with pytest.raises((vsconf.MatchError, vsconf.SpecError)) as info:
        plan_of(body, shapes)
    text = "\n".join(str(p) for p in info.value.problems)
    assert message in text
    if isinstance(info.value, vsconf.MatchError):
        assert all(p.tensor in shapes for p in info.value.problems), text


def test_an_expression_error_at_plan_time_points_at_its_character():
    body = 'rules:\n  - match: w\n    init: {normal: {std: "1 / (fan_in - 4)"}}\n'
    with pytest.raises(vsconf.MatchError) as info:
        plan_of(body, {"w": (3, 4)})
    (problem,) = info.value.problems
    assert (problem.line, problem.column, problem.tensor) == (6, 29, "w")  # the '/' of the text
    assert "division by zero" in problem.message


# --------------------------------------------------------------------------- the kinds' values


KINDS = """\
vars: {pad: 3}
rules:
  - match: orth
    init: {orthogonal: {gain: "sqrt(2)"}}
  - match: orth_tf
    init: {orthogonal: {gain: 1, layout: tf}}
  - match: eye
    init: {identity: {gain: 2}}
  - match: conv
    init: {dirac: {groups: 2}}
  - match: a_log
    init: {formula: "log(1 + i1)"}
  - match: table
    init: {formula: "sin(i0 / 10000 ** ((i1 - i1 % 2) / shape[1])) if i1 % 2 == 0 else cos(i0 / 10000 ** ((i1 - i1 % 2) / shape[1]))"}
  - match: qkv
    parts: {axis: 0, count: 3, inits: [{preset: glorot_uniform}]}
  - match: lstm_b
    parts: {axis: 0, count: 4, inits: [zeros, ones, {normal: {std: 0.1}}, {uniform: {low: -1, high: 1}}]}
  - match: cols
    parts: {axis: -1, sizes: [3, "fan_in - 3"], inits: [{orthogonal: {gain: 1}}, {formula: "i0 + 10 * i1"}]}
    zero_rows: [pad, -1]
"""
KIND_SHAPES = {
    "orth": (24, 3, 2, 2), "orth_tf": (2, 2, 3, 24), "eye": (5, 7), "conv": (8, 4, 3, 3), "a_log": (6, 16),
    "table": (50, 8), "qkv": (96, 32), "lstm_b": (64,), "cols": (9, 7),
}


@pytest.fixture(scope="module")
def kinds_plan():
    return plan_of(KINDS, KIND_SHAPES)


def test_matrix_kinds_give_what_torch_and_keras_define(kinds_plan):
    torch = pytest.importorskip("torch")
    values = {name: generate(kinds_plan.entry(name)) for name in KIND_SHAPES}
    q = values["orth"].astype(np.float64).reshape(24, 12)
    np.testing.assert_allclose(q.T @ q, 2 * np.eye(12), atol=1e-5)  # torch layout, tall: QᵀQ = gain²I
    k = values["orth_tf"].astype(np.float64).reshape(12, 24)
    np.testing.assert_allclose(k @ k.T, np.eye(12), atol=1e-5)  # tf layout, wide: QQᵀ = I
    eye = torch.empty(5, 7)
    torch.nn.init.eye_(eye)
    np.testing.assert_array_equal(values["eye"], 2 * eye.numpy())
    dirac = torch.empty(8, 4, 3, 3)
    torch.nn.init.dirac_(dirac, groups=2)
    np.testing.assert_array_equal(values["conv"], dirac.numpy())


def test_formulas_are_their_arithmetic_on_the_indices(kinds_plan):
    a_log = generate(kinds_plan.entry("a_log"))
    np.testing.assert_array_equal(a_log, np.broadcast_to(np.log(np.arange(1, 17, dtype=np.float64)), (6, 16)).astype(np.float32))
    position, i = np.arange(50)[:, None], np.arange(8)[None, :]
    angle = position / 10000 ** ((i - i % 2) / 8)
    expected = np.where(i % 2 == 0, np.sin(angle), np.cos(angle)).astype(np.float32)
    np.testing.assert_allclose(generate(kinds_plan.entry("table")), expected, rtol=0, atol=1e-6)


def test_each_part_is_the_tensor_of_its_shape_and_name(kinds_plan):
    """A part's values are those of the same init on a tensor of the part's shape named
    NAME[part k]: they never depend on the other parts."""
    qkv = generate(kinds_plan.entry("qkv"))
    for k in range(3):
        alone = plan_of("rules:\n  - match: '*'\n    init: {preset: glorot_uniform}\n", {f"qkv[part {k}]": (32, 32)})
        np.testing.assert_array_equal(qkv[32 * k : 32 * (k + 1)], generate(alone.entry(f"qkv[part {k}]")))
    entry = kinds_plan.entry("qkv")
    assert [(p.fan_in, p.fan_out) for p in entry.parts] == [(32, 32)] * 3  # per-third fans, not 32 x 96
    lstm = generate(kinds_plan.entry("lstm_b"))
    assert (lstm[:16] == 0).all() and (lstm[16:32] == 1).all()
    assert 0 < np.abs(lstm[32:48]).max() < 1 and 0 < np.abs(lstm[48:]).max() <= 1
    cols = generate(kinds_plan.entry("cols")).astype(np.float64)
    assert (cols[[3, 8]] == 0).all()  # zero_rows over the whole, after the parts
    left = cols[:, :3]
    rows = [r for r in range(9) if r not in (3, 8)]
    assert np.abs(left[rows]).max() > 0
    np.testing.assert_array_equal(cols[rows, 3:], (np.arange(9)[:, None] + 10 * np.arange(4)[None, :])[rows])


@pytest.mark.parametrize("name", list(KIND_SHAPES))
def test_every_slice_equals_the_whole_slice(kinds_plan, name):
    entry = kinds_plan.entry(name)
    whole = generate(entry)
    rng = np.random.default_rng(len(name))
    for _ in range(6):
        index = tuple(slice(int(a), int(a) + 1 + int(rng.integers(0, d - a))) for d in entry.shape for a in [rng.integers(0, d)])
        np.testing.assert_array_equal(slice_values(entry, index), whole[index])
    draw = draw_of(entry)
    from vsconf.draw import values

    for start, stop in [(0, 1), (3, draw.total - 2), (draw.total // 2, draw.total)]:
        np.testing.assert_array_equal(values(draw, start, stop), whole.reshape(-1)[start:stop])


def test_orthogonal_draws_from_the_tensors_own_stream():
    body = "rules:\n  - match: '*'\n    init: {orthogonal: {gain: 1}}\n"
    a = generate(plan_of(body, {"a": (8, 8), "b": (8, 8)}).entry("a"))
    b = generate(plan_of(body, {"a": (8, 8), "b": (8, 8)}).entry("b"))
    again = generate(plan_of(body, {"b": (8, 8), "a": (8, 8)}).entry("a"))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, again)  # the file's order changes nothing


# --------------------------------------------------------------------------- μP


def test_mup_base_shapes_give_base_fans_and_width_mult(tmp_path):
    (tmp_path / "base.bsh").write_text("# mup base shapes\nh.w: [16, 8]\nemb: [100, null]\n")
    (tmp_path / "init.yaml").write_text(
        HEAD + "base_shapes: base.bsh\nrules:\n"
        "  - match: h.w\n    init: {normal: {std: \"0.02 * sqrt(base_fan_in / fan_in)\"}}\n"
        "  - match: emb\n    init: {normal: {std: \"width_mult + base_fan_out\"}}\n"
    )
    arrays = {"h.w": np.zeros((64, 32), np.float32), "emb": np.zeros((100, 48), np.float32)}
    plan = vsconf.plan(arrays, tmp_path / "init.yaml")
    assert plan.entry("h.w").std == pytest.approx(0.02 * math.sqrt(8 / 32))
    # null: the dimension does not scale, so the base's is the tensor's own: fans (48, 100) both times
    assert plan.entry("emb").std == pytest.approx(1 + 100)
    (tmp_path / "base.bsh").write_text("other: [1, 2]\n")
    with pytest.raises(vsconf.MatchError, match="the base shapes have no tensor 'h.w'"):
        vsconf.plan(arrays, tmp_path / "init.yaml")
    (tmp_path / "base.bsh").write_text("h.w: [1, x]\n")
    with pytest.raises(vsconf.SpecError, match="expected a list of dimensions"):
        vsconf.plan(arrays, tmp_path / "init.yaml")


def test_mup_base_model_gives_the_shapes_of_a_model(tmp_path):
    np.savez(tmp_path / "base.npz", **{"h.w": np.zeros((16, 8), np.float32)})
    (tmp_path / "init.yaml").write_text(
        HEAD + "base_model: base.npz\nrules:\n  - match: h.w\n    init: {normal: {std: \"1 / width_mult\"}}\n"
    )
    plan = vsconf.plan({"h.w": np.zeros((64, 32), np.float32)}, tmp_path / "init.yaml")
    assert plan.entry("h.w").std == pytest.approx(8 / 32)


# --------------------------------------------------------------------------- the command line


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "vsconf", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def test_cli_vars_precedence_lock_and_verify(tmp_path):
    np.savez(tmp_path / "m.npz", **{"h.0.w": np.zeros((16, 8), np.float32), "h.1.w": np.zeros((16, 8), np.float32)})
    (tmp_path / "init.yaml").write_text(
        HEAD + "vars: {initializer_range: 0.02, n_layer: 2}\nrules:\n"
        "  - match: 're:h\\.(?P<layer>\\d+)\\.w'\n    init: {normal: {std: \"initializer_range / sqrt(2 * n_layer) * (layer + 1)\"}}\n"
    )
    # a Hugging Face config.json: strings, lists and mappings are left out
    (tmp_path / "config.json").write_text(json.dumps({"n_layer": 8, "initializer_range": 0.1, "model_type": "gpt2", "ids": [1]}))
    done = run("plan", "m.npz", "init.yaml", "--vars", "config.json", "--var", "n_layer=32", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["h.1.w"]["std"] == pytest.approx(0.1 / 8 * 2)  # --var over --vars over vars:
    assert rows["h.1.w"]["expressions"][0]["value"] == rows["h.1.w"]["std"]
    done = run("apply", "m.npz", "init.yaml", "-o", "out.npz", "--lock", "out.lock", "--var", "n_layer=32", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lock = json.loads((tmp_path / "out.lock").read_text())
    assert lock["vars"] == {"initializer_range": 0.02, "n_layer": 32}
    assert run("verify", "out.npz", "init.yaml", "--lock", "out.lock", cwd=tmp_path).returncode == 0  # the lock's vars
    failed = run("verify", "out.npz", "init.yaml", cwd=tmp_path)  # the spec's n_layer: other values
    assert failed.returncode == 1 and "differ" in failed.stderr and "give the same ones" in failed.stderr
    for bad in (["--var", "n_layer"], ["--var", "fan_in=3"], ["--var", "x=y"], ["--vars", "missing.json"]):
        done = run("validate", "init.yaml", *bad, cwd=tmp_path)
        assert done.returncode != 0 and "Traceback" not in done.stderr, (bad, done.stderr)


def test_orthogonal_under_layout_auto_reads_the_onnx_consumer(tmp_path):
    """A Conv's OIHW weight is seen as torch sees it ([out, in*k*k]); a Gemm's B (no
    transB: [in, out]) as Keras sees a kernel; both orthogonal through that view."""
    import onnx

    light = onnx.__file__.rsplit("/", 1)[0] + "/backend/test/data/light/light_squeezenet.onnx"
    (tmp_path / "init.yaml").write_text("vsconf: 1\nseed: 1\nrules:\n  - op: Conv\n    input: W\n    init: {orthogonal: {gain: 1}}\n")
    plan = vsconf.plan(light, tmp_path / "init.yaml", materialize=True)
    convs = [entry for entry in plan if entry.distribution == "orthogonal"]
    assert convs and {entry.layout for entry in convs} == {"torch"}
    entry = min(convs, key=lambda e: math.prod(e.shape))
    w = generate(entry).astype(np.float64).reshape(entry.shape[0], -1)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    np.testing.assert_allclose(gram, np.eye(gram.shape[0]), atol=1e-5)


def test_a_per_tensor_truncation_that_never_happens_is_a_plan_warning():
    body = 'rules:\n  - match: w\n    init: {truncated_normal: {std: "fan_in ** -1", a: -2, b: 2}}\n'
    plan = plan_of(body, {"w": (3, 50)})  # std 0.02: torch's absolute +-2 is +-100 std
    assert any("never happens" in p.message for p in plan.warnings)
    assert not any("never happens" in p.message for p in plan_of(body, {"w": (3, 1)}).warnings)  # std 1: +-2 std


def test_keras_orthogonal_and_identity_mean_what_keras_means():
    """``{class_name: Orthogonal}`` is Keras's Orthogonal: the tf view [prod(shape[:-1]),
    shape[-1]], its entries distributed as Keras's own (two-sample KS, pooled over seeds);
    ``Identity`` is Keras's, exactly."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    from stats import same_distribution

    body = """\
    rules:
      - match: k
        init: {class_name: Orthogonal, config: {gain: 1.5, seed: null}}
      - match: eye
        init: {class_name: Identity, config: {gain: 3}}
    """
    shape = (2, 3, 16)  # tf view: 6 x 16, wide
    ours, theirs = [], []
    for seed in range(40):
        model = [TensorInfo("k", shape, np.dtype(np.float32)), TensorInfo("eye", (4, 6), np.dtype(np.float32))]
        entry = make_plan(model, spec(body).with_seed(seed)).entry("k")
        assert entry.layout == "tf" and entry.gain == 1.5
        w = generate(entry).astype(np.float64)
        np.testing.assert_allclose(w.reshape(6, 16) @ w.reshape(6, 16).T, 2.25 * np.eye(6), atol=1e-5)
        ours.append(w.ravel())
        theirs.append(np.asarray(keras.initializers.Orthogonal(gain=1.5, seed=seed)(shape)).astype(np.float64).ravel())
    ok, d, critical = same_distribution(np.concatenate(ours), np.concatenate(theirs))
    assert ok, (d, critical)
    eye = generate(plan_of(body, {"k": shape, "eye": (4, 6)}).entry("eye"))
    np.testing.assert_array_equal(eye, np.asarray(keras.initializers.Identity(gain=3)((4, 6))))


@pytest.mark.slow
def test_shaped_kinds_write_the_same_bytes_from_threads_and_processes(tmp_path):
    """A seed checkpoint cut into small tasks: orthogonal, parts and formulas made box by box
    in worker processes are the bytes one thread makes."""
    (tmp_path / "m.shapes.json").write_text(json.dumps({"tensors": {
        "a.weight": {"shape": [512, 256], "dtype": "float32"},
        "b.weight": {"shape": [300, 64], "dtype": "bfloat16"},
        "c": {"shape": [64, 33], "dtype": "float16"},
    }}))
    (tmp_path / "s.yaml").write_text(HEAD + textwrap.dedent("""\
        rules:
          - match: a.weight
            init: {orthogonal: {gain: 2}}
          - match: b.weight
            parts: {axis: 0, sizes: [100, 200], inits: [{orthogonal: {gain: 1}}, {formula: "i0 * 0.5 + i1"}]}
          - match: c
            init: {formula: "sin(i0) * cos(i1)"}
        """))
    for out, more in (("t", ["--jobs", "1"]), ("p", ["--scheduler", "processes", "--jobs", "3"])):
        done = run("apply", "m.shapes.json", "s.yaml", "-o", f"{out}/", "--task-size", "64KiB", "--quiet", *more, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    name = "model-00001-of-00001.safetensors"
    assert (tmp_path / "t" / name).read_bytes() == (tmp_path / "p" / name).read_bytes()


@pytest.mark.slow
def test_new_kinds_through_an_onnx_file_verify_and_run(tmp_path):
    """Every format writes the new kinds as the draw makes them: an ONNX model whose Conv
    weights are orthogonal, biases a formula and the classifier's weight in parts, written,
    verified against the spec, and run by onnxruntime."""
    import onnx
    from onnx_builders import run as run_model

    light = onnx.__file__.rsplit("/", 1)[0] + "/backend/test/data/light/light_squeezenet.onnx"
    (tmp_path / "init.yaml").write_text(HEAD.replace("layout: torch\n", "") + textwrap.dedent("""\
        vars: {classes: 1000}
        rules:
          - op: Conv
            input: B
            init: {formula: "0.01 * sin(i0)"}
          - match: "*conv10*"
            op: Conv
            input: W
            parts: {axis: 0, sizes: ["classes // 2", "classes - classes // 2"], inits: [{normal: {std: 0.01}}, zeros]}
          - op: Conv
            input: W
            init: {orthogonal: {gain: "sqrt(2)"}}
        """))
    output = tmp_path / "out.onnx"
    result = vsconf.apply(light, tmp_path / "init.yaml", output, materialize=True)
    assert {entry.distribution for entry in result.plan if entry.changes} >= {"orthogonal", "formula", "parts"}
    assert vsconf.verify(output, tmp_path / "init.yaml") == []
    onnx.checker.check_model(str(output))
    assert np.isfinite(run_model(output)[0]).all()


def test_a_regex_group_hides_a_var_of_the_same_name():
    body = "vars: {layer: 100}\nrules:\n  - match: 're:h(?P<layer>\\d+)'\n    init: {normal: {std: \"layer + 1\"}}\n  - match: z\n    init: {normal: {std: \"layer\"}}\n"
    plan = plan_of(body, {"h3": (2, 2), "z": (2, 2)})
    assert (plan.entry("h3").std, plan.entry("z").std) == (4.0, 100.0)
