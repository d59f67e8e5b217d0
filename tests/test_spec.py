from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

import vsconf
from vsconf.errors import SpecError
from vsconf.fans import Axes
from vsconf.spec import ConstantInit, KeepInit, VarianceScalingInit, load_spec, parse_spec, schema_text

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))

# Every invalid spec below, with the exact problems vsconf reports: text, line and column.
INVALID = [
    pytest.param(
        "vsconf: 1\nseed: abc\nrules:\n  - match: '*'\n    init: zeros\n",
        [
            "init.yaml:2:7: seed: expected an integer, got a string ('abc')",
        ],
        id='seed_type',
    ),
    pytest.param(
        "vsconf: 1\nseed: -5\nrules:\n  - match: '*'\n    init: zeros\n",
        [
            'init.yaml:2:7: seed: must be >= 0, got -5',
        ],
        id='seed_negative',
    ),
    pytest.param(
        "vsconf: 1\nseed: 9223372036854775808\nrules:\n  - match: '*'\n    init: zeros\n",
        [
            'init.yaml:2:7: seed: must be <= 2**63 - 1, got 9223372036854775808',
        ],
        id='seed_too_big',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrule:\n  - match: '*'\n    init: zeros\n",
        [
            "init.yaml:1:1: missing required key 'rules'",
            "init.yaml:3:1: rule: unknown key 'rule'; did you mean 'rules'?",
        ],
        id='top_key_typo',
    ),
    pytest.param(
        "# yaml-language-server: $schema=../schemas/vsconf.schema.json\nvsconf: 1\nseed: 1234\nlayout: auto\nrules:\n  - match: '*.bias'\n    init: zeros\n  - match: conv*.weight\n    init: {mode: fan-in}\n",
        [
            "init.yaml:9:18: rules[1].init.mode: 'fan-in' is not one of 'fan_in', 'fan_out', 'fan_avg'; did you mean 'fan_in'?",
        ],
        id='mode_typo',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init:\n      distribution: truncated-normal\n",
        [
            "init.yaml:6:21: rules[0].init.distribution: 'truncated-normal' is not one of 'truncated_normal', 'untruncated_normal', 'uniform', 'normal'; did you mean 'truncated_normal'?",
        ],
        id='distribution_typo',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: ['*.bias', 're:layer[0-9+\\.weight']\n    init: zeros\n",
        [
            'init.yaml:4:23: rules[0].match[1]: invalid regular expression: unterminated character set at position 5',
        ],
        id='bad_regex',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {scale: -2.0}\n",
        [
            'init.yaml:5:19: rules[0].init.scale: must be > 0, got -2.0',
        ],
        id='negative_scale',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {preset: he_normal, scale: 0}\n",
        [
            'init.yaml:5:38: rules[0].init.scale: must be > 0, got 0',
        ],
        id='zero_scale',
    ),
    pytest.param(
        'vsconf: 1\nseed: 1\nrules: []\n',
        [
            'init.yaml:3:8: rules: must not be empty',
        ],
        id='empty_rules',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {axes: {in: [1, 1], out: [0]}}\n",
        [
            'init.yaml:5:23: rules[0].init.axes.in: repeats 1',
        ],
        id='repeated_axis',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init:\n      axes:\n        in: [0]\n        out: 1\n        batch: [0]\n",
        [
            'init.yaml:9:16: rules[0].init.axes.batch: axis 0 is already named in `in`; an axis has one role',
        ],
        id='axis_two_roles',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: ['*.bias'\n    init: zeros\n",
        [
            "init.yaml:5:5: invalid YAML: expected ',' or ']', but got '<scalar>' (while parsing a flow sequence at line 4)",
        ],
        id='yaml_syntax',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n\t- match: '*'\n\t  init: zeros\n",
        [
            'init.yaml:4:1: invalid YAML: a tab character; YAML indents with spaces only',
        ],
        id='tab_indent',
    ),
    pytest.param(
        '',
        [
            'init.yaml:1:1: the spec is empty; expected a mapping with `vsconf: 1`, `seed` and `rules`',
        ],
        id='empty_file',
    ),
    pytest.param(
        '# nothing here yet\n\n',
        [
            'init.yaml:1:1: the spec is empty; expected a mapping with `vsconf: 1`, `seed` and `rules`',
        ],
        id='comments_only',
    ),
    pytest.param(
        '- vsconf: 1\n- seed: 1\n',
        [
            'init.yaml:1:1: expected a mapping at the top of the spec, got a list',
        ],
        id='top_level_list',
    ),
    pytest.param(
        "vsconf: 2\nseed: 1\nrules:\n  - match: '*'\n    init: zeros\n",
        [
            'init.yaml:1:9: vsconf: must be 1, got an integer (2)',
        ],
        id='format_version',
    ),
    pytest.param(
        "layout: tf\nrules:\n  - match: '*'\n    init: zeros\n",
        [
            "init.yaml:1:1: missing required key 'seed'",
            "init.yaml:1:1: missing required key 'vsconf'",
        ],
        id='missing_required',
    ),
    pytest.param(
        'vsconf: 1\nseed: 1\nrules:\n  - init: zeros\n',
        [
            'init.yaml:4:5: rules[0]: a rule needs `match`, `op`, or both',
        ],
        id='rule_without_filter',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    input: B\n    init: zeros\n",
        [
            'init.yaml:5:5: rules[0].input: `input` needs `op` beside it',
        ],
        id='input_without_op',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: he_norml\n",
        [
            "init.yaml:5:11: rules[0].init: 'he_norml' is not one of 'glorot_uniform', 'glorot_normal', 'he_normal', 'he_uniform', 'lecun_normal', 'lecun_uniform', 'torch_default', 'zeros', 'ones', 'keep'; did you mean 'he_normal'?",
        ],
        id='unknown_preset',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {constant: one}\n",
        [
            "init.yaml:5:22: rules[0].init.constant: expected a number, got a string ('one')",
        ],
        id='constant_not_number',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {class_name: HeNormall, config: {}}\n",
        [
            "init.yaml:5:24: rules[0].init.class_name: 'HeNormall' is not one of 'VarianceScaling', 'GlorotUniform', 'GlorotNormal', 'HeNormal', 'HeUniform', 'LecunNormal', 'LecunUniform', 'Zeros', 'Ones', 'Constant'; did you mean 'HeNormal'?",
        ],
        id='keras_class_typo',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init:\n      class_name: GlorotUniform\n      config: {seed: 1, scale: 2.0}\n",
        [
            "init.yaml:7:25: rules[0].init.config.scale: unknown key 'scale'; allowed keys: 'seed', 'dtype', 'input_axes', 'output_axes'",
        ],
        id='keras_config_key',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nlayout: pytorch\nrules:\n  - match: '*'\n    init: zeros\n",
        [
            "init.yaml:3:9: layout: 'pytorch' is not one of 'auto', 'tf', 'torch'; did you mean 'torch'?",
        ],
        id='layout_typo',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nunmatched: warn\nrules:\n  - match: '*'\n    init: zeros\n",
        [
            "init.yaml:3:12: unmatched: 'warn' is not one of 'keep', 'error'",
        ],
        id='unmatched_typo',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: zeros\n    init: ones\n",
        [
            "init.yaml:6:5: rules[0].init: duplicate key 'init' (first given at line 5)",
        ],
        id='duplicate_key',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    optional: true\n",
        [
            "init.yaml:4:5: rules[0]: missing required key 'init'",
        ],
        id='missing_init',
    ),
    pytest.param(
        'vsconf: 1\nseed: 1\nrules:\n  - op: gemm\n    init: glorot_uniform\n',
        [
            "init.yaml:4:9: rules[0].op: 'gemm' is not an ONNX operator; did you mean 'Gemm'?",
        ],
        id='op_case_typo',
    ),
    pytest.param(
        'vsconf: 1\nseed: 1\nrules:\n  - op: Conv\n    input: weight\n    init: he_normal\n',
        [
            "init.yaml:5:12: rules[0].input: Conv has no input 'weight'; its inputs are 'X', 'W', 'B'",
        ],
        id='input_not_of_op',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    optional: 'no'\n    init: zeros\n",
        [
            "init.yaml:5:15: rules[0].optional: expected true or false, got a string ('no')",
        ],
        id='optional_string',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: ''\n    init: zeros\n",
        [
            'init.yaml:4:12: rules[0].match: must not be empty',
        ],
        id='empty_match',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {axes: {in: [0]}, input_axes: [0], output_axes: [1]}\n",
        [
            "init.yaml:5:18: rules[0].init.axes: give either `axes` or Keras's `input_axes`/`output_axes`, not both",
        ],
        id='axes_and_keras_axes',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {scale: 1e-3}\n",
        [
            "init.yaml:5:19: rules[0].init.scale: expected a number, got a string ('1e-3') (YAML 1.1 reads 1e-3 as a string: write it with a dot, e.g. 1.0e-2)",
        ],
        id='exponent_without_dot',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: [he_normal]\n",
        [
            'init.yaml:5:11: rules[0].init: expected a string or a mapping, got a list',
        ],
        id='init_list',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*.bias'\n    fans_from: weights\n    init: torch_default\n",
        [
            "init.yaml:5:16: rules[0].fans_from: 'weights' is not one of 'weight'; did you mean 'weight'?",
        ],
        id='fans_from_typo',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\ndefaults:\n  preset: he_normal\nrules:\n  - match: '*'\n    init: {}\n",
        [
            "init.yaml:4:3: defaults.preset: unknown key 'preset'; allowed keys: 'scale', 'mode', 'distribution', 'seed', 'dtype', 'axes'",
        ],
        id='defaults_preset',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  match: '*'\n  init: zeros\n",
        [
            'init.yaml:4:3: rules: expected a list, got a mapping',
        ],
        id='rules_not_list',
    ),
    pytest.param(
        "vsconf: 1\nseed: -1\nlayout: TF\nrules:\n  - match: '*'\n    init: {scale: 0, mode: avg, distrbution: uniform}\n  - init: keep\n",
        [
            'init.yaml:2:7: seed: must be >= 0, got -1',
            "init.yaml:3:9: layout: 'TF' is not one of 'auto', 'tf', 'torch'; did you mean 'tf'?",
            'init.yaml:6:19: rules[0].init.scale: must be > 0, got 0',
            "init.yaml:6:28: rules[0].init.mode: 'avg' is not one of 'fan_in', 'fan_out', 'fan_avg'; did you mean 'fan_avg'?",
            "init.yaml:6:33: rules[0].init.distrbution: unknown key 'distrbution'; did you mean 'distribution'?",
            'init.yaml:7:5: rules[1]: a rule needs `match`, `op`, or both',
        ],
        id='many_at_once',
    ),
]

# Problems only vsconf's own checks find; the schema alone accepts these documents.
SEMANTIC_ONLY = {"bad_regex", "axis_two_roles", "duplicate_key", "op_case_typo", "input_not_of_op", "axes_and_keras_axes"}
NOT_YAML = {"yaml_syntax", "tab_indent"}


@pytest.mark.parametrize(("text", "expected"), INVALID)
def test_invalid_specs_report_every_problem_with_its_position(text, expected):
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="init.yaml")
    assert [str(p) for p in info.value.problems] == expected
    assert str(info.value) == "\n".join(expected)


def test_there_are_at_least_25_distinct_invalid_specs():
    assert len({p.id for p in INVALID}) >= 25


@pytest.mark.parametrize(("text", "expected"), INVALID)
def test_schema_alone_agrees_with_the_python_validation(request, text, expected):
    case = request.node.callspec.id
    if case in NOT_YAML:
        with pytest.raises(yaml.YAMLError):
            yaml.safe_load(text)
        return
    errors = list(jsonschema.Draft202012Validator(json.loads(schema_text())).iter_errors(yaml.safe_load(text)))
    if case in SEMANTIC_ONLY:
        assert errors == []
    else:
        assert errors, "the schema accepted a spec that load_spec rejects"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_bundled_config_is_valid_by_schema_and_by_load_spec(path):
    data = yaml.safe_load(path.read_text())
    jsonschema.Draft202012Validator(json.loads(schema_text())).validate(data)
    spec = load_spec(path)
    assert len(spec.rules) == len(data["rules"])


def test_the_configs_cover_the_promised_examples():
    assert {p.stem for p in CONFIGS} >= {
        "keras_defaults",
        "pytorch_defaults",
        "he_cnn",
        "transformer",
        "tf1_get_config",
    }


def test_schema_ships_in_the_package_and_in_schemas_dir():
    shipped = json.loads(schema_text())
    assert json.loads((ROOT / "schemas" / "vsconf.schema.json").read_text()) == shipped
    jsonschema.Draft202012Validator.check_schema(shipped)
    assert shipped["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert shipped["$id"]


def _properties(node, defs, trail=""):
    """Yield (path, property schema) for every property in the schema."""
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            yield f"{trail}.{name}", sub
        for key, sub in node.items():
            if key not in ("properties", "if"):  # an `if` is a condition, not a property
                yield from _properties(sub, defs, f"{trail}/{key}")
        for name, sub in node.get("properties", {}).items():
            yield from _properties(sub, defs, f"{trail}.{name}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from _properties(sub, defs, f"{trail}[{i}]")


def test_every_property_has_a_description_for_editors():
    schema = json.loads(schema_text())
    defs = schema["$defs"]
    missing = []
    for path, sub in _properties(schema, defs):
        target = defs[sub["$ref"].rsplit("/", 1)[1]] if "$ref" in sub and "description" not in sub else sub
        if "description" not in target:
            missing.append(path)
    assert missing == []


def test_unknown_keys_are_rejected_everywhere():
    schema = json.loads(schema_text())
    objects = [schema] + [d for d in schema["$defs"].values() if d.get("type") == "object"]
    assert all(o.get("additionalProperties") is False for o in objects)


VALID = """\
# a comment
vsconf: 1
seed: 77
layout: torch
defaults:
  distribution: untruncated_normal
  seed: 5
rules:
  - match: "*.bias"
    init: zeros
  - match: ["conv*.weight", "re:^features\\\\.\\\\d+\\\\.weight$"]
    init: he_normal
  - match: fc.weight
    init: {preset: lecun_uniform, scale: 3.0}
  - match: head.weight
    init: {mode: fan_out, axes: {in: 1, out: [0]}}
  - op: [Gemm, MatMul]
    input: B
    init: {class_name: GlorotNormal, config: {seed: 9}, module: keras.initializers, registered_name: null}
  - match: "*.scale"
    optional: true
    init: {constant: 0.5}
  - match: "emb*"
    init: keep
  - match: "k*"
    init: {class_name: VarianceScaling, config: {scale: 2.0, mode: fan_avg, distribution: uniform, input_axes: [0], output_axes: [1, 2]}}
  - match: "ones*"
    init: {class_name: Ones, config: {}}
"""


def test_normalisation_gives_every_rule_one_explicit_init():
    spec = parse_spec(VALID, source="init.yaml")
    assert (spec.seed, spec.layout, spec.unmatched) == (77, "torch", "keep")
    inits = [rule.init for rule in spec.rules]
    assert inits[0] == ConstantInit(0.0)
    # A preset is complete: the defaults' distribution does not override it; the defaults' seed fills in.
    assert inits[1] == VarianceScalingInit(2.0, "fan_in", "truncated_normal", seed=5)
    assert inits[2] == VarianceScalingInit(3.0, "fan_in", "uniform", seed=5)
    # A bare mapping takes TF1's scale 1.0 and the defaults' distribution.
    assert inits[3] == VarianceScalingInit(1.0, "fan_out", "untruncated_normal", seed=5, axes=Axes(1, 0))
    assert inits[4] == VarianceScalingInit(1.0, "fan_avg", "truncated_normal", seed=9)
    assert inits[5] == ConstantInit(0.5)
    assert inits[6] == KeepInit()
    assert inits[7] == VarianceScalingInit(2.0, "fan_avg", "uniform", seed=5, axes=Axes(0, (1, 2), rest="batch"))
    assert inits[8] == ConstantInit(1.0)
    assert spec.rules[1].match == ("conv*.weight", "re:^features\\.\\d+\\.weight$")
    assert spec.rules[4].op == ("Gemm", "MatMul") and spec.rules[4].input == ("B",)
    assert spec.rules[5].optional and not spec.rules[0].optional
    assert [rule.line for rule in spec.rules][:3] == [9, 11, 13]


def test_pasted_tf1_config_normalises_like_the_initializer():
    spec = load_spec(ROOT / "configs" / "tf1_get_config.yaml")
    conv = spec.rules[1].init
    tf1 = vsconf.VarianceScaling(scale=2.0, mode="fan_in", distribution="truncated_normal")
    assert (conv.scale, conv.mode, conv.distribution, conv.seed) == (tf1.scale, tf1.mode, tf1.distribution, None)
    assert spec.rules[2].init == VarianceScalingInit(2.0, "fan_in", "truncated_normal", seed=3)


def test_normal_is_kept_as_written_and_flagged():
    spec = parse_spec(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {distribution: normal}\n", source="a.yaml"
    )
    assert spec.rules[0].init.distribution == "normal"
    assert [w.format("warning") for w in spec.warnings] == [
        "a.yaml:5:26: rules[0].init.distribution: warning: 'normal' is a deprecated alias of "
        "'truncated_normal' (TF1's meaning); write 'truncated_normal', or 'untruncated_normal' "
        "for JAX's and PyTorch's normal"
    ]


def test_other_warnings():
    spec = parse_spec(
        "vsconf: 1\nseed: 1\nrules:\n"
        "  - op: MyCustomOp\n    init: zeros\n"
        "  - match: k\n    init: {input_axes: [0]}\n",
        source="a.yaml",
    )
    assert [str(w) for w in spec.warnings] == [
        "a.yaml:4:9: rules[0].op: 'MyCustomOp' is not an ONNX operator",
        "a.yaml:7:24: rules[1].init.input_axes: Keras uses `input_axes`/`output_axes` only when both "
        "are given; this one is ignored",
    ]


def test_canonical_form_ignores_formatting_and_tracks_meaning():
    a = parse_spec("vsconf: 1\nseed: 3\nrules:\n  - match: '*'\n    init: he_normal\n")
    b = parse_spec("# reformatted\n{rules: [{init: {preset: he_normal}, match: ['*']}], seed: 3, vsconf: 1, layout: auto}")
    c = parse_spec("vsconf: 1\nseed: 3\nrules:\n  - match: '*'\n    init: {scale: 2.0, mode: fan_in, distribution: truncated_normal, dtype: float16}\n")
    assert a.canonical_json() == b.canonical_json() == c.canonical_json()
    assert a.sha256 == b.sha256 == c.sha256
    assert len(a.sha256) == 64
    assert json.loads(a.canonical_json())["rules"] == [
        {"init": {"scale": 2.0, "mode": "fan_in", "distribution": "truncated_normal", "seed": None}, "match": ["*"]}
    ]
    assert a.with_seed(4).sha256 != a.sha256
    d = parse_spec("vsconf: 1\nseed: 3\nrules:\n  - match: '*'\n    init: he_uniform\n")
    assert d.sha256 != a.sha256


def test_load_spec_reports_unreadable_files(tmp_path):
    with pytest.raises(SpecError, match=r"missing\.yaml: cannot read the spec: No such file or directory"):
        load_spec(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(SpecError, match="binary.yaml: cannot read the spec"):
        load_spec(binary)


def test_spec_error_is_a_vsconf_error():
    assert issubclass(SpecError, vsconf.VsconfError)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_the_canonical_form_is_itself_a_spec_with_the_same_digest(path):
    spec = load_spec(path)
    again = parse_spec(spec.canonical_json(), source="canonical.json")
    assert again.canonical() == spec.canonical()
    assert again.sha256 == spec.sha256


def test_canonical_form_of_a_valid_spec_with_every_init_kind_round_trips():
    spec = parse_spec(VALID)
    assert parse_spec(spec.canonical_json()).sha256 == spec.sha256
