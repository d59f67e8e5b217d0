from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

import vsconf
from vsconf.errors import SpecError
from vsconf.fans import Axes
from vsconf.spec import (
    MAX_SPEC_BYTES,
    ConstantInit,
    KeepInit,
    VarianceScalingInit,
    load_spec,
    parse_spec,
    schema_text,
)

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
            'init.yaml:4:5: rules[0]: a rule needs `match`, `op` or `role` (or several)',
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
            # a string is an expression: a bare word, a name no rule gives
            "init.yaml:5:22: rules[0].init.constant: unknown name 'one'; names here: fan_in, fan_out, ndim, numel, shape",
        ],
        id='constant_not_number',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {class_name: HeNormall, config: {}}\n",
        [
            "init.yaml:5:24: rules[0].init.class_name: 'HeNormall' is not one of 'VarianceScaling', 'GlorotUniform', 'GlorotNormal', 'HeNormal', 'HeUniform', 'LecunNormal', 'LecunUniform', 'Zeros', 'Ones', 'Constant', 'RandomNormal', 'RandomUniform', 'TruncatedNormal', 'Orthogonal', 'Identity'; did you mean 'HeNormal'?",
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
        "vsconf: 1\nseed: 08\nrules:\n  - match: '*'\n    init: zeros\n",
        [
            "init.yaml:2:7: seed: expected an integer, got a string ('08') (YAML 1.1 reads 08 as a string, as it starts with 0 but is not octal)",
        ],
        id='seed_not_octal',
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
            'init.yaml:7:5: rules[1]: a rule needs `match`, `op` or `role` (or several)',
        ],
        id='many_at_once',
    ),
    # --- hostile input: numbers YAML has and JSON has not
    pytest.param(
        "vsconf: 1\nseed: 7.0\nrules:\n  - match: '*'\n    init: zeros\n",
        [
            "init.yaml:2:7: seed: expected an integer, got a number (7.0)",
        ],
        id='seed_float',
    ),
    pytest.param(
        "vsconf: 1\nseed: " + "9" * 5000 + "\nrules:\n  - match: '*'\n    init: zeros\n",
        [
            "init.yaml:2:7: seed: an integer of 5000 digits; expected at most 40 digits",
        ],
        id='seed_5000_digits',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {axes: {in: 0x" + "f" * 50 + "}}\n",
        [
            "init.yaml:5:23: rules[0].init.axes.in: an integer of 50 digits; expected at most 40 digits",
        ],
        id='hex_axis_50_digits',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {scale: .nan}\n  - match: b\n    init: {constant: -.inf}\n"
        "  - match: c\n    init: {class_name: Constant, config: {value: 1.0e+999}}\n",
        [
            "init.yaml:5:19: rules[0].init.scale: expected a finite number or an expression (a string), got .nan (not a number)",
            "init.yaml:7:22: rules[1].init.constant: expected a finite number or an expression (a string), got -.inf (infinity)",
            "init.yaml:9:50: rules[2].init.config.value: expected a finite number or an expression (a string), got .inf (infinity)",
        ],
        id='non_finite_numbers',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {seed: 3.0, axes: {in: 1.0}}\n",
        [
            "init.yaml:5:18: rules[0].init.seed: expected an integer or null, got a number (3.0)",
            "init.yaml:5:34: rules[0].init.axes.in: expected an integer or a list, got a number (1.0)",
        ],
        id='floats_for_integers',
    ),
    # --- hostile input: YAML that PyYAML cannot construct, or that vsconf will not
    pytest.param(
        "vsconf: 1\nseed: 2024-13-45\nrules:\n  - match: '*'\n    init: !!int zero\n",
        [
            "init.yaml:2:7: invalid YAML: '2024-13-45' is not a date",
        ],
        id='impossible_date',
    ),
    pytest.param(
        "vsconf: 1\nseed: !!int zero\nrules:\n  - match: '*'\n    init: zeros\n",
        [
            "init.yaml:2:7: invalid YAML: 'zero' is not an integer",
        ],
        id='explicit_int_tag',
    ),
    pytest.param(
        "vsconf: 1\nseed: !!python/object/apply:os.system [ls]\nrules:\n  - match: '*'\n    init: zeros\n",
        [
            "init.yaml:2:7: invalid YAML: unknown tag !!python/object/apply:os.system; a spec holds plain YAML values",
        ],
        id='python_tag',
    ),
    pytest.param(
        "vsconf: 1\nseed: 2024-01-02\nrules:\n  - match: '*'\n    init: zeros\n",
        [
            "init.yaml:2:7: seed: expected an integer, got a date (2024-01-02)",
        ],
        id='seed_date',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\n1: a\nyes: b\nrules:\n  - match: '*'\n    init: zeros\n",
        [
            "init.yaml:3:1: 1: a key must be a string; YAML reads '1' as an integer (quote it)",
            "init.yaml:4:1: yes: a key must be a string; YAML reads 'yes' as a boolean (quote it)",
        ],
        id='keys_not_strings',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules: " + "[" * 100 + "]" * 100 + "\n",
        [
            "init.yaml:3:71: the spec nests deeper than 64 levels",
        ],
        id='deep_nesting',
    ),
    pytest.param(
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
        + "vsconf: 1\nseed: 1\nrules: *i\n",
        [
            "init.yaml:5:20: expanding alias *d makes the spec larger than 50000 nodes, the limit",
        ],
        id='alias_bomb',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules: &r\n  - match: '*'\n    init: *r\n",
        [
            "init.yaml:5:11: alias *r refers to a node that contains it; a spec cannot be recursive",
        ],
        id='recursive_alias',
    ),
    pytest.param(
        "deep: &d " + "[" * 40 + "]" * 40 + "\nvsconf: 1\nseed: 1\nrules: [[[[[[[[[[[[[[[[[[[[[[[[[[*d]]]]]]]]]]]]]]]]]]]]]]]]]\n",
        [
            "init.yaml:4:34: alias *d nests the spec deeper than 64 levels",
        ],
        id='alias_too_deep',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\x00\nrules: []\n",
        [
            "init.yaml:2:8: invalid YAML: a NUL character (U+0000); is this a binary file?",
        ],
        id='nul_character',
    ),
    pytest.param(
        "vsconf: 1\r\nseed: 1\r\nrules:\r\n  - match: 'a\x1b[31m'\r\n",
        [
            "init.yaml:4:14: invalid YAML: control character U+001B, which YAML does not allow",
        ],
        id='escape_character_crlf',
    ),
    pytest.param(
        "defaults: &d {scale: 2.0}\nvsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: *x\n",
        [
            "init.yaml:6:11: invalid YAML: alias *x is not defined; its anchor must come before it",
        ],
        id='undefined_alias',
    ),
    pytest.param(
        "vsconf: &a 1\nseed: &a 1\nrules: []\n",
        [
            "init.yaml:2:7: invalid YAML: anchor &a is defined twice (first at line 1)",
        ],
        id='duplicate_anchor',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {mode: " + "fan" * 100 + "}\n",
        [
            "init.yaml:5:18: rules[0].init.mode: 'fanfanfanfanfanfanfanfanfanfanfanfanfanf'...(300 characters) is not one of 'fan_in', 'fan_out', 'fan_avg'",
        ],
        id='long_value_cut_short',
    ),
    pytest.param(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: zeros\n    init: ones\n    optional: maybe\n",
        [
            "init.yaml:6:5: rules[0].init: duplicate key 'init' (first given at line 5)",
            "init.yaml:7:15: rules[0].optional: expected true or false, got a string ('maybe')",
        ],
        id='duplicate_key_and_schema',
    ),
]

# Problems only vsconf's own checks find; the schema alone accepts these documents.
SEMANTIC_ONLY = {
    "bad_regex", "axis_two_roles", "duplicate_key", "op_case_typo", "input_not_of_op", "axes_and_keras_axes",
    # YAML keeps what JSON cannot say: JSON Schema counts 7.0 as an integer, and the schema
    # cannot refuse .nan or .inf (JSON has neither); vsconf's validator tells them apart.
    "seed_float", "floats_for_integers", "non_finite_numbers",
    # A string where a number goes is an expression: the schema cannot read its names.
    "constant_not_number",
}
NOT_YAML = {
    "yaml_syntax", "tab_indent", "python_tag", "nul_character", "escape_character_crlf", "undefined_alias",
    "duplicate_anchor",
}
# yaml.safe_load itself raises ValueError on these (vsconf reports them at the node).
NOT_CONSTRUCTIBLE = {"impossible_date", "explicit_int_tag"}
# Valid YAML that vsconf refuses to read at all (yaml.safe_load would take long, recurse too
# deep, or build a number too long to print): nothing for the schema to agree on.
REFUSED = {"seed_5000_digits", "hex_axis_50_digits", "deep_nesting", "alias_bomb", "recursive_alias", "alias_too_deep"}


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
    if case in REFUSED:
        return
    if case in NOT_CONSTRUCTIBLE:
        with pytest.raises(ValueError):
            yaml.safe_load(text)
        return
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
    with pytest.raises(SpecError, match="binary.yaml:1:1: cannot read the spec: it is UTF-16 text"):
        load_spec(binary)


def _problems(path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return [str(p) for p in info.value.problems]


def test_load_spec_reads_only_regular_files(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    assert _problems(fifo) == [f"{fifo}: cannot read the spec: it is a FIFO, not a regular file"]
    assert _problems(tmp_path) == [f"{tmp_path}: cannot read the spec: it is a folder, not a regular file"]
    assert _problems("/dev/zero") == ["/dev/zero: cannot read the spec: it is a character device, not a regular file"]
    link = tmp_path / "link.yaml"
    link.symlink_to(fifo)
    assert _problems(link) == [f"{link}: cannot read the spec: it is a FIFO, not a regular file"]


def test_load_spec_refuses_a_spec_over_1_mib_without_reading_it_all(tmp_path, monkeypatch):
    big = tmp_path / "big.yaml"
    with big.open("wb") as out:
        out.truncate(100 << 20)  # sparse: 100 MiB of NULs
    reads = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    assert _problems(big) == [f"{big}: cannot read the spec: it is larger than 1 MiB (1048576 bytes), the limit for a spec"]
    assert sum(reads) <= MAX_SPEC_BYTES + 1
    exact = tmp_path / "exact.yaml"
    exact.write_bytes(b"# " + b"x" * (MAX_SPEC_BYTES - 3) + b"\n")
    assert _problems(exact) == [f"{exact}:1:1: the spec is empty; expected a mapping with `vsconf: 1`, `seed` and `rules`"]


def test_load_spec_points_at_the_first_byte_that_is_not_utf8(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("vsconf: 1\nseed: 1\nrules:\n  - match: 'caf\u00e9s.\u00e9t\u00e9'\n".encode("utf-8").replace(b"\xc3\xa9t", b"\xe9t"))
    assert _problems(bad) == [f"{bad}:4:19: cannot read the spec: it is not UTF-8 text (byte 0xe9: invalid continuation byte); save it as UTF-8"]
    truncated = tmp_path / "truncated.yaml"
    truncated.write_bytes("\ufeffa: \u00e9".encode("utf-8")[:-1])
    assert _problems(truncated) == [f"{truncated}:1:4: cannot read the spec: it is not UTF-8 text (byte 0xc3: unexpected end of data); save it as UTF-8"]


def test_a_bom_and_crlf_line_ends_are_fine(tmp_path):
    spec = tmp_path / "windows.yaml"
    spec.write_bytes(b"\xef\xbb\xbfvsconf: 1\r\nseed: 3\r\nrules:\r\n  - match: '*'\r\n    init: he_normal\r\n")
    assert load_spec(spec).sha256 == parse_spec("vsconf: 1\nseed: 3\nrules:\n  - match: '*'\n    init: he_normal\n").sha256
    spec.write_bytes(b"\xef\xbb\xbfvsconf: 1\r\nseed: x\r\n")
    assert _problems(spec)[0] == f"{spec}:1:1: missing required key 'rules'"
    assert _problems(spec)[1] == f"{spec}:2:7: seed: expected an integer, got a string ('x')"


def test_wrong_argument_types_are_type_errors():
    with pytest.raises(TypeError, match="load_spec: path must be a str or an os.PathLike, got NoneType"):
        load_spec(None)
    with pytest.raises(TypeError, match="parse_spec: text must be a str, got bytes"):
        parse_spec(b"vsconf: 1")
    with pytest.raises(SpecError, match="cannot read the spec: the path holds a NUL character"):
        load_spec("a\0b.yaml")


def test_numbers_with_an_exponent_are_floats_as_in_json():
    # YAML 1.1 reads 1e-3 as a string; JSON and YAML 1.2 read a number, and so does vsconf,
    # so that the canonical form (JSON, where Python writes 1e-05) loads back.
    spec = parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {scale: 1e-3}\n  - match: b\n    init: {constant: -.5E+2}\n")
    assert spec.rules[0].init.scale == 0.001 and spec.rules[1].init == ConstantInit(-50.0)
    tiny = parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {scale: 0.00001}\n")
    assert '"scale":1e-05' in tiny.canonical_json()
    assert parse_spec(tiny.canonical_json()).sha256 == tiny.sha256


def test_anchors_and_aliases_in_an_ordinary_spec_still_work():
    spec = parse_spec(
        "vsconf: 1\nseed: 1\nrules:\n"
        "  - match: '*.bias'\n    init: &he {preset: he_normal, mode: fan_out}\n"
        "  - match: '*.weight'\n    init: *he\n"
        "  - match: 'x'\n    init: {<<: *he, scale: 3.0}\n"
    )
    assert spec.rules[0].init == spec.rules[1].init == VarianceScalingInit(2.0, "fan_out", "truncated_normal")
    assert spec.rules[2].init == VarianceScalingInit(3.0, "fan_out", "truncated_normal")


def test_an_alias_bomb_is_refused_quickly():
    levels = "".join(f"l{i + 1}: &l{i + 1} [" + ", ".join([f"*l{i}"] * 10) + "]\n" for i in range(12))
    started = time.monotonic()
    with pytest.raises(SpecError, match="expanding alias \\*l4 makes the spec larger than 50000 nodes"):
        parse_spec("l0: &l0 lol\n" + levels)
    assert time.monotonic() - started < 5  # a few milliseconds: it stops at the alias


def test_a_spec_of_the_largest_size_is_read_in_bounded_time():
    rules = "".join(f"  - {{match: 'x{i:06}.*', init: he_normal}}\n" for i in range(24000))
    started = time.monotonic()
    with pytest.raises(SpecError, match=":10002:26: the spec is larger than 50000 nodes, the limit"):
        parse_spec("vsconf: 1\nseed: 1\nrules:\n" + rules)
    assert time.monotonic() - started < 30  # about 2 s; the bound only catches unbounded work


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


def test_the_canonical_form_keeps_characters_beyond_the_bmp():
    # JSON escapes U+1F600 as the pair \ud83d\ude00; read back, it is one character again.
    spec = parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: 'emb\U0001F600.*'\n    init: zeros\n")
    again = parse_spec(spec.canonical_json())
    assert again.rules[0].match == ("emb\U0001F600.*",)
    assert again.canonical() == spec.canonical()


def test_an_escape_beyond_unicode_is_a_located_problem():
    with pytest.raises(SpecError) as info:
        parse_spec('vsconf: 1\nseed: 1\nrules:\n  - match: "\\U00110000"\n', source="init.yaml")
    assert [str(p) for p in info.value.problems] == [
        "init.yaml:4:15: invalid YAML: an escape beyond U+10FFFF (while scanning a double-quoted scalar at line 4)"
    ]
