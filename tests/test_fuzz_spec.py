"""Property tests for the spec loader: random text, YAML documents built from the spec's own
vocabulary (valid and invalid values mixed), and mutations of the bundled configs go
through :func:`vsconf.parse_spec` and :func:`vsconf.load_spec`.  Whatever the input:

* only :class:`vsconf.SpecError` comes out, and every problem it carries points at a line
  and column (>= 1) and is a short message;
* a spec that loads has a canonical form that is itself a spec with the same SHA-256.

``tests/fuzzing.py`` says how to run it long (``VSCONF_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from fuzzing import FUZZ
from hypothesis import given
from hypothesis import strategies as st

import vsconf

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = [path.read_text(encoding="utf-8") for path in sorted((ROOT / "configs").glob("*.yaml"))]
MESSAGE_LIMIT = 1000  # no problem line quotes a whole value, however long


def check(text: str) -> None:
    """The properties, for spec text given as a string."""
    try:
        spec = vsconf.parse_spec(text, source="fuzz.yaml")
    except vsconf.SpecError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.line >= 1 and problem.column >= 1, problem
            assert len(str(problem)) < MESSAGE_LIMIT, problem
        return
    again = vsconf.parse_spec(spec.canonical_json(), source="canonical.json")
    assert again.sha256 == spec.sha256
    assert again.canonical() == spec.canonical()


# ------------------------------------------------------------------ the spec's vocabulary

KEYS = [
    "vsconf",
    "seed",
    "layout",
    "defaults",
    "unmatched",
    "rules",
    "match",
    "op",
    "input",
    "init",
    "optional",
    "fans_from",
    "preset",
    "scale",
    "mode",
    "distribution",
    "dtype",
    "axes",
    "in",
    "out",
    "batch",
    "input_axes",
    "output_axes",
    "constant",
    "class_name",
    "config",
    "module",
    "registered_name",
    "value",
    "sead",
    "rule",
    "<<",
    "1",
    "",
]
WORDS = [
    "auto",
    "tf",
    "torch",
    "keep",
    "error",
    "fan_in",
    "fan_out",
    "fan_avg",
    "fan-in",
    "truncated_normal",
    "untruncated_normal",
    "uniform",
    "normal",
    "Uniform",
    "float32",
    "bfloat16",
    "int8",
    "he_normal",
    "glorot_uniform",
    "lecun_normal",
    "torch_default",
    "zeros",
    "ones",
    "he_normall",
    "weight",
    "VarianceScaling",
    "GlorotUniform",
    "HeNormal",
    "Zeros",
    "Ones",
    "Constant",
    "Conv",
    "Gemm",
    "MatMul",
    "conv",
    "com.microsoft.Attention",
    "W",
    "B",
    "C",
    "R",
    "*",
    "*.bias",
    "conv?.weight",
    "[ab]*",
    "layer[0-9].weight",
    "a[*]b",
    "[!a]",
    "[z-a]",
    "*a*a*a*a*a*a*b",
    "re:.*\\.weight",
    "re:(a+)+b",
    "re:(a)\\1",
    "re:(?=a)",
    "re:[",
    "re:a{4294967296}",
    "re:(a{100}){100}",
    "re:\\d+",
    "re:(?i)X",
    "yes",
    "no",
    "~",
    "null",
    "1e-3",
    "08",
    "0x1F",
    "1:30",
    "2024-02-30",
    ".nan",
    "-.inf",
]
NUMBERS = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 7, -1, 2**63 - 1, 2**63, 7.0, 0.5, 2.0, 1e-5, 1e16, -0.0]),
)
SCALARS = st.one_of(st.sampled_from(WORDS), NUMBERS, st.booleans(), st.none(), st.text(max_size=6))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    ),
    max_leaves=25,
)
INITS = st.one_of(
    st.sampled_from(WORDS),
    st.fixed_dictionaries(
        {},
        optional={
            "preset": st.sampled_from(WORDS),
            "scale": NUMBERS,
            "mode": st.sampled_from(WORDS),
            "distribution": st.sampled_from(WORDS),
            "seed": st.one_of(NUMBERS, st.none()),
            "axes": st.dictionaries(
                st.sampled_from(["in", "out", "batch", "inn"]),
                st.one_of(NUMBERS, st.lists(NUMBERS, max_size=3)),
                max_size=3,
            ),
            "constant": NUMBERS,
        },
    ),
    st.fixed_dictionaries({"class_name": st.sampled_from(WORDS), "config": VALUES}),
    VALUES,
)
RULES = st.fixed_dictionaries(
    {"init": INITS},
    optional={
        "match": st.one_of(st.sampled_from(WORDS), st.lists(st.sampled_from(WORDS), max_size=3), VALUES),
        "op": st.one_of(st.sampled_from(WORDS), st.lists(st.sampled_from(WORDS), max_size=2)),
        "input": st.sampled_from(WORDS),
        "optional": st.one_of(st.booleans(), SCALARS),
        "fans_from": st.sampled_from(WORDS),
    },
)
SPECS = st.fixed_dictionaries(
    {"vsconf": st.one_of(st.just(1), SCALARS), "seed": st.one_of(st.integers(0, 2**63 - 1), NUMBERS, SCALARS)},
    optional={
        "rules": st.one_of(st.lists(RULES, max_size=4), VALUES),
        "layout": st.sampled_from(WORDS),
        "unmatched": st.sampled_from(WORDS),
        "defaults": st.one_of(INITS, VALUES),
        "sead": VALUES,
    },
)


# Valid specs (most of them, at least: a rule may match a name the op filter cannot use),
# for the canonical round trip; one value may then be replaced by anything.
FINITE = st.floats(allow_nan=False, allow_infinity=False)
POSITIVE = st.one_of(st.floats(min_value=1e-300, max_value=1e300), st.sampled_from([1e-5, 2.0, 1e16, 0.1]))
SEEDS = st.integers(0, 2**63 - 1)
PATTERNS = st.one_of(
    st.sampled_from(
        [
            "*",
            "*.bias",
            "conv?.weight",
            "[ab]*",
            "a[*]b",
            "*a*a*a*b",
            "re:.*\\.weight",
            "re:(a+)+b",
            "re:\\d+",
            "re:(?i)X",
        ]
    ),
    st.text(min_size=1, max_size=8).filter(lambda text: not text.startswith("re:")),
)
VS_KEYS = {
    "scale": POSITIVE,
    "mode": st.sampled_from(["fan_in", "fan_out", "fan_avg"]),
    "distribution": st.sampled_from(["truncated_normal", "untruncated_normal", "uniform", "normal"]),
    "seed": st.one_of(SEEDS, st.none()),
    "dtype": st.sampled_from(["float16", "bfloat16", "float32", "float64"]),
}
VALID_INITS = st.one_of(
    st.sampled_from(["glorot_uniform", "he_normal", "lecun_uniform", "torch_default", "zeros", "ones", "keep"]),
    st.fixed_dictionaries({"constant": FINITE}),
    st.fixed_dictionaries(
        {}, optional={**VS_KEYS, "preset": st.sampled_from(["he_uniform", "glorot_normal", "torch_default"])}
    ),
    st.fixed_dictionaries(
        {},
        optional={
            **VS_KEYS,
            "axes": st.fixed_dictionaries({"in": st.just(0), "out": st.just([1])}, optional={"batch": st.just(-1)}),
        },
    ),
    st.fixed_dictionaries(
        {"class_name": st.just("VarianceScaling"), "config": st.fixed_dictionaries({}, optional=VS_KEYS)}
    ),
    st.fixed_dictionaries(
        {
            "class_name": st.sampled_from(["HeNormal", "LecunUniform"]),
            "config": st.fixed_dictionaries({}, optional={"seed": SEEDS}),
        }
    ),
    st.fixed_dictionaries({"class_name": st.just("Constant"), "config": st.fixed_dictionaries({"value": FINITE})}),
)
VALID_RULES = st.one_of(
    st.fixed_dictionaries(
        {"match": st.one_of(PATTERNS, st.lists(PATTERNS, min_size=1, max_size=3)), "init": VALID_INITS},
        optional={"optional": st.booleans()},
    ),
    st.fixed_dictionaries(
        {"op": st.sampled_from(["Conv", "Gemm", ["MatMul", "Gemm"], "com.example.Op"]), "init": VALID_INITS},
        optional={"match": PATTERNS},
    ),
    st.fixed_dictionaries(
        {"op": st.just("Conv"), "input": st.sampled_from(["W", "B"]), "init": VALID_INITS},
        optional={"fans_from": st.just("weight")},
    ),
)
VALID_SPECS = st.fixed_dictionaries(
    {"vsconf": st.just(1), "seed": SEEDS, "rules": st.lists(VALID_RULES, min_size=1, max_size=4)},
    optional={
        "layout": st.sampled_from(["auto", "tf", "torch"]),
        "unmatched": st.sampled_from(["keep", "error"]),
        "defaults": st.fixed_dictionaries({}, optional=VS_KEYS),
    },
)


def _slots(data, out):
    """Every (container, key) of a document, in a fixed order."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        out.append((data, key))
        _slots(value, out)
    return out


def replace_one(data, choice: int, value):
    """``data`` with the value at one place (picked by ``choice``) replaced by ``value``."""
    data = copy.deepcopy(data)
    slots = _slots(data, [])
    container, key = slots[choice % len(slots)]
    container[key] = value
    return data


def dump(data, flow: bool) -> str:
    return yaml.safe_dump(data, default_flow_style=flow, sort_keys=False, allow_unicode=True)


# ------------------------------------------------------------------ text mutations

FRAGMENTS = [
    "\t",
    "\x00",
    "\x1b",
    "\ufeff",
    "\r\n",
    "\r",
    "\n",
    " ",
    "  ",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "#",
    "'",
    '"',
    "&a ",
    "*a",
    "<<: *a\n",
    "!!int ",
    "!!python/object:os.system ",
    "!!binary ",
    "? ",
    "|\n",
    "---\n",
    "...\n",
    "9" * 50,
    "0x" + "f" * 45,
    ".nan",
    "-.inf",
    "1.0e+999",
    "7.0",
    "[" * 80,
    "%YAML 1.1\n",
    "\\",
    "\\u0000",
    "\udcff",
    "\U0001f600",
    "\u2028",
    "\x85",
]
MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["insert", "delete", "replace", "duplicate"]),
        st.integers(0, 10**6),
        st.integers(0, 40),
        st.sampled_from(FRAGMENTS),
    ),
    min_size=1,
    max_size=4,
)


def mutate(text: str, mutations) -> str:
    for kind, where, length, fragment in mutations:
        at = where % (len(text) + 1)
        if kind == "insert":
            text = text[:at] + fragment + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + length :]
        elif kind == "replace":
            text = text[:at] + fragment + text[at + len(fragment) :]
        else:
            text = text[:at] + text[at : at + length] + text[at:]
    return text


# ------------------------------------------------------------------ the tests


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text):
    check(text)


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("abv:-[]{},&*!|>'\"#\n\t %@`?.0123456789")), max_size=200))
def test_random_yaml_punctuation(text):
    check(text)


@FUZZ
@given(SPECS, st.booleans(), st.one_of(st.just([]), MUTATIONS))
def test_documents_from_the_spec_vocabulary(data, flow, mutations):
    text = dump(data, flow)
    check(mutate(text, mutations) if mutations else text)


@FUZZ
@given(VALID_SPECS, st.booleans(), st.one_of(st.none(), st.tuples(st.integers(0, 1000), VALUES)))
def test_valid_specs_and_one_change(data, flow, change):
    check(dump(data if change is None else replace_one(data, *change), flow))


@FUZZ
@given(st.sampled_from(CONFIGS), MUTATIONS)
def test_mutated_bundled_configs(config, mutations):
    check(mutate(config, mutations))


@FUZZ
@given(
    st.one_of(st.binary(max_size=200), st.sampled_from(CONFIGS).map(str.encode)),
    st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=4)), max_size=3),
)
def test_load_spec_on_random_bytes(tmp_path_factory, data, patches):
    for where, patch in patches:
        at = where % (len(data) + 1)
        data = data[:at] + patch + data[at + len(patch) :]
    path = tmp_path_factory.mktemp("spec") / "spec.yaml"
    path.write_bytes(data)
    try:
        spec = vsconf.load_spec(path)
    except vsconf.SpecError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.source == str(path)
            assert problem.line >= 1 and problem.column >= 1, problem
            assert len(str(problem)) < MESSAGE_LIMIT + len(str(path)), problem
        return
    assert vsconf.parse_spec(spec.canonical_json()).sha256 == spec.sha256


@pytest.mark.parametrize("text", CONFIGS)
def test_the_bundled_configs_load_and_round_trip(text):
    vsconf.parse_spec(text)
    check(text)
