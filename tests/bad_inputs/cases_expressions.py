"""Hostile expressions in specs (#21): numeric parameters written as expressions, ``vars``,
``when``, ``zero_rows``, ``parts``, ``formula`` and the matrix inits.

Expressions that would cost a naive evaluator its memory or its time (``9**9**9**9``, a
megabyte of text, ten thousand parentheses), that reach for Python (``__import__``,
attributes, lambdas), that have no value (a division by zero, ``sqrt(-1)``, an overflow, a
NaN), vars that read each other in a circle or before they are written or take a name vsconf
gives itself, and shapes that a per-tensor value does not fit (a row out of range, parts
that do not add up, an orthogonal vector, an index the tensor does not have).

An expression that reads only vars is computed when the spec loads: ``vsconf validate``
reports it at its line and column (the column of the culprit inside the string).  One that
reads a tensor's names is computed at ``plan`` time, and its error names the tensor too.
"""

from __future__ import annotations

import json

import numpy as np

from bad_inputs.common import npz_bytes
from bad_inputs.harness import Case

# fc.weight [3, 4] and fc.bias [3]; torch layout: fc.weight's fan_in is 4.
HEAD = "vsconf: 1\nseed: 7\nlayout: torch\nrules:\n"
MODEL = {"m.npz": npz_bytes()}
CONV_MODEL = {"m.npz": npz_bytes({"conv.weight": np.zeros((4, 2, 3), np.float32), "conv.bias": np.zeros(4, np.float32)})}
# `init: {normal: {std: '` puts the expression's first character at column 27 of line 6.
STD = "  - match: '*'\n    init: {normal: {std: '%s'}}\n"
WEIGHT_ONLY = "  - match: fc.weight\n    %s\n  - match: fc.bias\n    init: zeros\n"


def with_vars(written: str) -> str:
    return f"vsconf: 1\nseed: 7\nlayout: torch\nvars: {written}\nrules:\n"


def validate(case_id: str, spec: str, *lines: str) -> Case:
    """``vsconf validate spec.yaml`` exits 1 with these problem lines and the count."""
    count = len(lines)
    stderr = "".join(f"{line}\n" for line in lines) + f"vsconf: error: spec.yaml: {count} problem{'s' if count != 1 else ''}\n"
    return Case(case_id, ("validate", "spec.yaml"), 1, stderr, files={"spec.yaml": spec}, stdout="")


def refused(case_id: str, spec: str, message: str, model=MODEL, argv=("plan", "m.npz", "spec.yaml")) -> Case:
    """``vsconf plan m.npz spec.yaml`` exits 1 with one ``vsconf: error:`` message (its later
    lines, one a tensor, as they are)."""
    return Case(case_id, argv, 1, f"vsconf: error: {message}\n", files={**model, "spec.yaml": spec}, stdout="")


CASES: list[Case] = [
    # ------------------------------------------------------------------ sizes: refused before anything large is made
    validate(
        "expr-power-tower",
        HEAD + STD % "9**9**9**9",
        "spec.yaml:6:31: rules[0].init.normal.std: the value overflows: 9 ** 387420489 is beyond the integer range ±2**53",
    ),
    refused(
        "expr-power-tower-in-a-formula",
        HEAD + WEIGHT_ONLY % "init: {formula: '2 ** 2 ** 2 ** 2 ** 2 + i0'}",
        "spec.yaml:6:24: rules[0].init.formula: tensor 'fc.weight': '2 ** 2 ** 2 ** 2 ** 2 + i0': the value overflows: "
        "2 ** 65536 is beyond the integer range ±2**53",
    ),
    validate(
        "expr-one-megabyte",
        HEAD + STD % ("1+" * 500_000 + "1"),
        "spec.yaml:6:4123: rules[0].init.normal.std: the expression is too long: more than 4096 characters",
    ),
    validate(
        "expr-ten-thousand-nested-parentheses",
        HEAD + STD % ("(" * 10_000 + "1" + ")" * 10_000),
        "spec.yaml:6:4123: rules[0].init.normal.std: the expression is too long: more than 4096 characters",
    ),
    validate(
        "expr-nesting-within-the-length-limit",
        HEAD + STD % ("(" * 2000 + "0.02" + ")" * 2000),
        "spec.yaml:6:91: rules[0].init.normal.std: the expression is nested too deeply: more than 64 levels",
    ),
    validate(
        "expr-too-many-operations",
        HEAD + STD % ("+".join(["0.001"] * 300)),
        "spec.yaml:6:795: rules[0].init.normal.std: the expression is too large: more than 256 numbers, names and operations",
    ),
    # ------------------------------------------------------------------ Python is not reachable
    validate(
        "expr-import-os",
        HEAD + "  - match: '*'\n    init: {normal: {std: \"__import__('os').system('touch pwned')\"}}\n",
        "spec.yaml:6:27: rules[0].init.normal.std: unknown function '__import__'; the functions are abs, ceil, cos, exp, "
        "floor, log, log10, log2, max, min, pow, round, sin, sqrt, tanh, where",
    ),
    validate(
        "expr-attributes-subscripts-lambdas-strings",
        HEAD
        + "  - match: a\n    init: {normal: {std: '().__class__.__bases__'}}\n"
        + "  - match: b\n    init: {normal: {std: 'shape.__len__'}}\n"
        + "  - match: c\n    init: {normal: {std: 'shape[0:1]'}}\n"
        + "  - match: d\n    init: {normal: {std: '(lambda: 1)()'}}\n"
        + '  - match: e\n    init: {normal: {std: "0.02 + \'1\'"}}\n',
        "spec.yaml:6:28: rules[0].init.normal.std: expected an expression, found ')'",
        "spec.yaml:8:32: rules[1].init.normal.std: '.' is not an operator: expressions have no attributes",
        "spec.yaml:10:34: rules[2].init.normal.std: ':' is not allowed: expressions have no slices, lambdas or mappings",
        "spec.yaml:12:28: rules[3].init.normal.std: 'lambda' is a Python keyword, not part of expressions",
        "spec.yaml:14:34: rules[4].init.normal.std: strings are not part of expressions",
    ),
    validate(
        "expr-unicode-digits",
        HEAD + STD % "٠.٠٢" + "  - match: x\n    init: {normal: {std: '0.02 * ２'}}\n",
        "spec.yaml:6:27: rules[0].init.normal.std: unexpected character '٠'",
        "spec.yaml:8:34: rules[1].init.normal.std: unexpected character '２'",
    ),
    # ------------------------------------------------------------------ names
    validate(
        "expr-unknown-name",
        with_vars("{n_layer: 12}") + STD % "0.02 / sqrt(2 * n_layers)",
        "spec.yaml:7:43: rules[0].init.normal.std: unknown name 'n_layers'; did you mean 'n_layer'?",
    ),
    refused(
        "expr-unknown-index-name-in-a-formula",
        HEAD + WEIGHT_ONLY % "init: {formula: 'i0 + i7'}",
        "spec.yaml:6:27: rules[0].init.formula: tensor 'fc.weight': 'i0 + i7': unknown name 'i7'; names here: i0, i1",
    ),
    validate(
        "expr-vars-in-a-cycle",
        with_vars("{a: 'b + 1', b: 'a + 1'}") + STD % "0.02 * a",
        "spec.yaml:4:12: vars.a: unknown name 'b'; no names are defined here (a var may read only the vars written before it)",
        # b and the std read a, which has no value: a's problem is the one reported
    ),
    validate(
        "expr-var-read-before-it-is-written",
        with_vars("{proj_std: 'initializer_range / 2', initializer_range: 0.02}") + STD % "proj_std",
        "spec.yaml:4:19: vars.proj_std: unknown name 'initializer_range'; no names are defined here "
        "(a var may read only the vars written before it)",
    ),
    validate(
        "expr-vars-named-as-vsconf-names",
        with_vars("{fan_in: 768, i0: 0, pi: 3, shape: 2}") + STD % "0.02",
        "spec.yaml:4:8: vars.fan_in: var 'fan_in' is a name vsconf gives itself",
        "spec.yaml:4:21: vars.i0: var 'i0' is a name vsconf gives itself",
        "spec.yaml:4:28: vars.pi: var 'pi' is a name vsconf gives itself",
        "spec.yaml:4:35: vars.shape: var 'shape' is a name vsconf gives itself",
    ),
    validate(
        "expr-when-reads-a-tensor-name",
        with_vars("{jax_mode: 1}") + "  - match: '*'\n    when: 'jax_mode and fan_in > 2'\n    init: zeros\n",
        "spec.yaml:7:25: rules[0].when: unknown name 'fan_in'; names here: jax_mode (`when` reads only vars)",
    ),
    # ------------------------------------------------------------------ values that are not numbers
    validate(
        "expr-division-by-zero",
        with_vars("{n_layer: 12}") + STD % "0.02 / (n_layer - 12)" + "  - match: x\n    when: '1 // (n_layer - 12)'\n    init: zeros\n",
        "spec.yaml:7:32: rules[0].init.normal.std: division by zero",
        "spec.yaml:9:14: rules[1].when: division by zero",
    ),
    refused(
        "expr-division-by-zero-for-one-tensor",
        HEAD + WEIGHT_ONLY % "init: {normal: {std: '0.02 / (fan_in - 4)'}}",
        "spec.yaml:6:32: rules[0].init.normal.std: tensor 'fc.weight': '0.02 / (fan_in - 4)': division by zero",
    ),
    validate(
        "expr-sqrt-of-minus-one",
        HEAD + STD % "sqrt(-1)" + "  - match: x\n    init: {uniform: {low: 'log(0)', high: 1}}\n",
        "spec.yaml:6:27: rules[0].init.normal.std: sqrt of a negative number (-1)",
        "spec.yaml:8:28: rules[1].init.uniform.low: log of zero",
    ),
    validate(
        "expr-std-not-finite",
        with_vars("{x: .nan}") + STD % "x" + "  - match: y\n    init: {normal: {std: 'exp(1000)'}}\n",
        "spec.yaml:4:11: vars.x: expected a finite number or true or false or an expression (a string), got .nan (not a number)",
        # (what reads x says nothing more: x's own problem is reported)
        "spec.yaml:9:27: rules[1].init.normal.std: the value overflows: exp(1000) is too large for a float",
    ),
    refused(
        "expr-formula-log-of-zero-names-the-element",
        HEAD + WEIGHT_ONLY % "init: {formula: 'log(i1) if i0 > 0 else 0'}",
        "spec.yaml:6:22: rules[0].init.formula: tensor 'fc.weight': 'log(i1) if i0 > 0 else 0': log of zero where i0 = 1, i1 = 0",
    ),
    validate(
        "expr-boolean-where-a-number-is-wanted",
        HEAD
        + "  - match: a\n    init: {normal: {std: true}}\n"
        + "  - match: b\n    init: {dirac: {groups: yes}}\n"
        + "  - match: c\n    init: zeros\n    zero_rows: [false]\n"
        + "  - match: d\n    parts: {axis: 0, count: true, inits: [zeros]}\n",
        "spec.yaml:6:26: rules[0].init.normal.std: expected a number or an expression (a string), got a boolean (true)",
        "spec.yaml:8:28: rules[1].init.dirac.groups: expected an integer or an expression (a string), got a boolean (true)",
        "spec.yaml:11:17: rules[2].zero_rows[0]: expected an integer or an expression (a string), got a boolean (false)",
        "spec.yaml:13:29: rules[3].parts.count: expected an integer or an expression (a string), got a boolean (true)",
    ),
    validate(
        "expr-fraction-where-an-integer-is-wanted",
        with_vars("{pad_token_id: 3}") + "  - match: '*'\n    init: zeros\n    zero_rows: ['pad_token_id / 2']\n",
        "spec.yaml:8:17: rules[0].zero_rows[0]: 'pad_token_id / 2' is 1.5; expected an integer",
    ),
    # ------------------------------------------------------------------ per-tensor values the tensor does not fit
    refused(
        "expr-zero-rows-out-of-range",
        with_vars("{pad_token_id: 3}") + WEIGHT_ONLY % "init: {normal: {std: 0.02}}\n    zero_rows: ['pad_token_id']",
        "spec.yaml: rules[0] (line 6): tensor 'fc.weight': zero_rows: row 3 is out of range for a tensor of 3 rows (shape [3, 4])",
    ),
    refused(
        "expr-parts-sizes-do-not-add-up",
        with_vars("{d_inner: 1}") + WEIGHT_ONLY % "parts: {axis: 0, sizes: ['d_inner', 'd_inner'], inits: [zeros, ones]}",
        "spec.yaml: rules[0] (line 6): tensor 'fc.weight': parts: axis 0 of shape [3, 4] holds 3, but the sizes [1, 1] add up to 2",
    ),
    refused(
        "expr-parts-count-does-not-divide-the-axis",
        with_vars("{n_heads: 2}") + WEIGHT_ONLY % "parts: {axis: 0, count: 'n_heads', inits: [{normal: {std: 0.02}}]}",
        "spec.yaml: rules[0] (line 6): tensor 'fc.weight': parts: axis 0 of shape [3, 4] holds 3, "
        "which does not divide into 2 equal parts",
    ),
    refused(
        "expr-orthogonal-on-a-vector",
        HEAD + "  - match: fc.weight\n    init: zeros\n  - match: fc.bias\n    init: {orthogonal: {gain: 'sqrt(2)'}}\n",
        "spec.yaml: rules[1] (line 7): tensor 'fc.bias': orthogonal: Only tensors with 2 or more dimensions are supported. "
        "Received: shape=(3,)",
    ),
    refused(
        "expr-orthogonal-parts-that-are-vectors",
        HEAD + "  - match: fc.weight\n    init: zeros\n  - match: fc.bias\n    parts: {count: 'shape[0]', inits: [{orthogonal: {gain: 1}}]}\n",
        "spec.yaml: rules[1] (line 7): tensor 'fc.bias[part 0]': orthogonal: Only tensors with 2 or more dimensions are supported. "
        "Received: shape=(1,)\n"
        "spec.yaml: rules[1] (line 7): tensor 'fc.bias[part 1]': orthogonal: Only tensors with 2 or more dimensions are supported. "
        "Received: shape=(1,)\n"
        "spec.yaml: rules[1] (line 7): tensor 'fc.bias[part 2]': orthogonal: Only tensors with 2 or more dimensions are supported. "
        "Received: shape=(1,)",
    ),
    refused(
        "expr-orthogonal-above-the-element-limit",
        HEAD + "  - match: '*'\n    init: {orthogonal: {gain: 1}}\n",
        "spec.yaml: rules[0] (line 5): tensor 'w': orthogonal: An orthogonal tensor of shape (4096, 4096) is a 4096 x 4096 "
        "matrix of 16777216 elements, above vsconf's limit of 4194304 (2048 x 2048): its QR costs rows x cols x "
        "min(rows, cols) and would take about a minute",
        model={"m.shapes.json": json.dumps({"tensors": {"w": {"shape": [4096, 4096]}}})},
        argv=("plan", "m.shapes.json", "spec.yaml"),
    ),
    refused(
        "expr-identity-on-a-vector",
        HEAD + "  - match: fc.weight\n    init: {identity: {gain: 1}}\n  - match: fc.bias\n    init: {identity: {gain: 1}}\n",
        "spec.yaml: rules[1] (line 7): tensor 'fc.bias': identity: Only tensors with 2 dimensions are supported. "
        "Received: shape=(3,)",
    ),
    refused(
        "expr-dirac-groups-do-not-divide-the-out-channels",
        HEAD + "  - match: conv.weight\n    init: {dirac: {groups: 'shape[1] + 1'}}\n  - match: conv.bias\n    init: zeros\n",
        "spec.yaml: rules[0] (line 5): tensor 'conv.weight': dirac: dim 0 must be divisible by groups. "
        "Received: shape=(4, 2, 3), groups=3",
        model=CONV_MODEL,
    ),
    refused(
        "expr-dirac-on-a-matrix",
        HEAD + WEIGHT_ONLY % "init: {dirac: {groups: 1}}",
        "spec.yaml: rules[0] (line 5): tensor 'fc.weight': dirac: Only tensors with 3, 4, or 5 dimensions are supported. "
        "Received: shape=(3, 4)",
    ),
]
