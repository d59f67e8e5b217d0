"""Hostile specs: files that are not specs (FIFOs, devices, folders, huge, not UTF-8), YAML
that would hang or crash a naive loader (deep nesting, alias bombs, NUL bytes, Python tags,
numbers too long to print), values of the wrong type at every level, non-finite numbers,
and patterns that would backtrack forever against a long tensor name.

Every case is run through ``vsconf validate``, ``plan`` or ``apply``: a spec error with one
problem prints as one ``vsconf: error: FILE:LINE:COL: PATH: message`` line; several print
one a line, then ``vsconf: error: FILE: N problems``; ``validate`` always ends with the
count.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bad_inputs.common import GOOD_SPEC, npz_bytes, onnx_bytes, make_fifo, make_folder
from bad_inputs.harness import Case

HEAD = "vsconf: 1\nseed: 7\nrules:\n"
LONG_NAME = "a" * 3000  # an ordinary tensor name, only long: the bait for backtracking
MODEL = {"m.npz": npz_bytes()}
LONG_MODEL = {"long.npz": npz_bytes({LONG_NAME: np.ones((2, 2), np.float32), "fc.bias": np.zeros(2, np.float32)})}


def validate(case_id: str, spec: str | bytes, *lines: str) -> Case:
    """``vsconf validate spec.yaml`` exits 1 with these problem lines and the count."""
    count = len(lines)
    stderr = (
        "".join(f"{line}\n" for line in lines)
        + f"vsconf: error: spec.yaml: {count} problem{'s' if count != 1 else ''}\n"
    )
    return Case(case_id, ("validate", "spec.yaml"), 1, stderr, files={"spec.yaml": spec}, stdout="")


def refused(
    case_id: str, spec: str | bytes | None, message: str, argv=("plan", "m.npz", "spec.yaml"), build=None, model=MODEL
) -> Case:
    """``vsconf plan|apply m.npz spec.yaml`` exits 1 with one ``vsconf: error:`` line."""
    files = dict(model) if spec is None else {**model, "spec.yaml": spec}
    return Case(case_id, argv, 1, f"vsconf: error: {message}\n", files=files, build=build, stdout="")


def _links(links: dict[str, str]):
    def build(folder: Path) -> None:
        for name, target in links.items():
            os.symlink(target, folder / name)

    return build


def _sparse(name: str, size: int):
    def build(folder: Path) -> None:
        with (folder / name).open("wb") as out:
            out.truncate(size)

    return build


def _bomb(levels: int = 9) -> str:
    """A "billion laughs": each anchor is a list of ten aliases of the one before."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nvsconf: 1\nseed: 7\nrules: *l{levels - 1}\n"


RULE = "  - match: '*'\n    init: {}\n"

CASES: list[Case] = [
    # ------------------------------------------------------------------ not a spec file
    refused("spec-missing", None, "spec.yaml: cannot read the spec: No such file or directory"),
    refused(
        "spec-folder",
        None,
        "spec.yaml: cannot read the spec: it is a folder, not a regular file",
        build=make_folder("spec.yaml"),
    ),
    refused(
        "spec-fifo",
        None,
        "spec.yaml: cannot read the spec: it is a FIFO, not a regular file",
        argv=("apply", "m.npz", "spec.yaml"),
        build=make_fifo("spec.yaml"),
    ),
    Case(
        "spec-dev-zero",
        ("apply", "m.npz", "/dev/zero", "--dry-run"),
        1,
        "vsconf: error: /dev/zero: cannot read the spec: it is a character device, not a regular file\n",
        files=MODEL,
        stdout="",
    ),
    Case(
        "spec-validate-dev-zero-and-a-fifo",
        ("validate", "/dev/zero", "pipe.yaml"),
        1,
        "/dev/zero: cannot read the spec: it is a character device, not a regular file\n"
        "vsconf: error: /dev/zero: 1 problem\n"
        "pipe.yaml: cannot read the spec: it is a FIFO, not a regular file\n"
        "vsconf: error: pipe.yaml: 1 problem\n",
        build=make_fifo("pipe.yaml"),
        stdout="",
    ),
    refused(
        "spec-100-mib",
        None,
        "spec.yaml: cannot read the spec: it is larger than 1 MiB (1048576 bytes), the limit for a spec",
        build=_sparse("spec.yaml", 100 << 20),
    ),
    refused(
        "spec-just-over-1-mib",
        GOOD_SPEC + "#" * (1 << 20),
        "spec.yaml: cannot read the spec: it is larger than 1 MiB (1048576 bytes), the limit for a spec",
        argv=("apply", "m.npz", "spec.yaml"),
    ),
    Case(
        "spec-symlink-loop",
        ("validate", "a.yaml"),
        1,
        "a.yaml: cannot read the spec: Too many levels of symbolic links\nvsconf: error: a.yaml: 1 problem\n",
        build=_links({"a.yaml": "b.yaml", "b.yaml": "a.yaml"}),
        stdout="",
    ),
    Case(
        "spec-is-a-model",
        ("apply", "m.npz", "model.onnx"),
        1,
        "vsconf: error: model.onnx:1:4: cannot read the spec: it is not UTF-8 text (byte 0x99: invalid start byte); "
        "save it as UTF-8\n",
        files={**MODEL, "model.onnx": onnx_bytes()},
        stdout="",
    ),
    refused(
        "spec-latin-1",
        HEAD.encode() + "  - match: 'caf\xe9.weight'\n    init: zeros\n".encode("latin-1"),
        "spec.yaml:4:16: cannot read the spec: it is not UTF-8 text (byte 0xe9: invalid continuation byte); save it as UTF-8",
    ),
    refused(
        "spec-utf-16",
        GOOD_SPEC.encode("utf-16"),
        "spec.yaml:1:1: cannot read the spec: it is UTF-16 text (it starts with a UTF-16 byte-order mark); save it as UTF-8",
    ),
    refused(
        "spec-binary-nul",
        b"vsconf: 1\nseed: 7\x00\x00\x01\x02",
        "spec.yaml:2:8: invalid YAML: a NUL character (U+0000); is this a binary file?",
    ),
    validate(
        "spec-escape-sequence",
        HEAD + "  - match: '\x1b[1mbold'\n    init: zeros\n",
        "spec.yaml:4:13: invalid YAML: control character U+001B, which YAML does not allow",
    ),
    validate(
        "spec-empty-file",
        "",
        "spec.yaml:1:1: the spec is empty; expected a mapping with `vsconf: 1`, `seed` and `rules`",
    ),
    validate(
        "spec-only-comments",
        "# vsconf: 1\n# seed: 7\n\n",
        "spec.yaml:1:1: the spec is empty; expected a mapping with `vsconf: 1`, `seed` and `rules`",
    ),
    validate(
        "spec-top-level-list",
        "- vsconf: 1\n- seed: 7\n",
        "spec.yaml:1:1: expected a mapping at the top of the spec, got a list",
    ),
    validate(
        "spec-top-level-scalar",
        "he_normal\n",
        "spec.yaml:1:1: expected a mapping at the top of the spec, got a string ('he_normal')",
    ),
    validate(
        "spec-two-documents",
        GOOD_SPEC + "---\n" + GOOD_SPEC,
        "spec.yaml:6:1: invalid YAML: but found another document (expected a single document in the stream at line 1)",
    ),
    # ------------------------------------------------------------------ text details
    validate(
        "spec-bom-and-crlf",
        "\ufeffvsconf: 1\r\nseed: 7\r\nrules:\r\n  - match: '*'\r\n    init: {mode: fan-in}\r\n",
        "spec.yaml:5:18: rules[0].init.mode: 'fan-in' is not one of 'fan_in', 'fan_out', 'fan_avg'; did you mean 'fan_in'?",
    ),
    validate(
        "spec-tab-indent",
        HEAD + "  - match: '*'\n\t  init: zeros\n",
        "spec.yaml:5:1: invalid YAML: a tab character; YAML indents with spaces only",
    ),
    validate(
        "spec-duplicate-keys",
        "vsconf: 1\nseed: 7\nseed: 8\nrules:\n  - match: '*'\n    init: zeros\n    init: ones\n",
        "spec.yaml:3:1: seed: duplicate key 'seed' (first given at line 2)",
        "spec.yaml:7:5: rules[0].init: duplicate key 'init' (first given at line 6)",
    ),
    validate(
        "spec-keys-not-strings",
        "vsconf: 1\nseed: 7\n1: one\nno: false\nrules:\n  - match: '*'\n    init: zeros\n",
        "spec.yaml:3:1: 1: a key must be a string; YAML reads '1' as an integer (quote it)",
        "spec.yaml:4:1: no: a key must be a string; YAML reads 'no' as a boolean (quote it)",
    ),
    validate(
        "spec-unknown-keys-everywhere",
        "vsconf: 1\nseed: 7\nsead: 8\ndefaults: {scael: 2.0}\nrules:\n  - mach: '*'\n    match: '*'\n    init: {scale: 2.0, axes: {inn: 0}}\n",
        "spec.yaml:3:1: sead: unknown key 'sead'; did you mean 'seed'?",
        "spec.yaml:4:12: defaults.scael: unknown key 'scael'; did you mean 'scale'?",
        "spec.yaml:6:5: rules[0].mach: unknown key 'mach'; did you mean 'match'?",
        "spec.yaml:8:31: rules[0].init.axes.inn: unknown key 'inn'; did you mean 'in'?",
    ),
    validate(
        "spec-wrong-types-at-the-top",
        "vsconf: '1'\nseed: [7]\nlayout: 3\ndefaults: [scale]\nunmatched: false\nrules: he_normal\n",
        "spec.yaml:1:9: vsconf: must be 1, got a string ('1')",
        "spec.yaml:2:7: seed: expected an integer, got a list",
        "spec.yaml:3:9: layout: 3 is not one of 'auto', 'tf', 'torch'",
        "spec.yaml:4:11: defaults: expected a mapping, got a list",
        "spec.yaml:5:12: unmatched: False is not one of 'keep', 'error'",
        "spec.yaml:6:8: rules: expected a list, got a string ('he_normal')",
    ),
    validate(
        "spec-wrong-types-in-rules",
        HEAD
        + "  - he_normal\n  - match: 5\n    init: 3\n  - op: {Conv: W}\n    optional: 1\n    fans_from: 0\n    init: {axes: x}\n",
        "spec.yaml:4:5: rules[0]: expected a mapping, got a string ('he_normal')",
        "spec.yaml:5:12: rules[1].match: expected a string or a list, got an integer (5)",
        "spec.yaml:6:11: rules[1].init: expected a string or a mapping, got an integer (3)",
        "spec.yaml:7:9: rules[2].op: expected a string or a list, got a mapping",
        "spec.yaml:8:15: rules[2].optional: expected true or false, got an integer (1)",
        "spec.yaml:9:16: rules[2].fans_from: 0 is not one of 'weight'",
        "spec.yaml:10:18: rules[2].init.axes: expected a mapping, got a string ('x')",
    ),
    validate(
        "spec-long-value-is-cut-short",
        HEAD + "  - match: '*'\n    init: " + "glorot" * 1000 + "\n",
        "spec.yaml:5:11: rules[0].init: 'glorotglorotglorotglorotglorotglorotglor'...(6000 characters) is not one of "
        "'glorot_uniform', 'glorot_normal', 'he_normal', 'he_uniform', 'lecun_normal', 'lecun_uniform', "
        "'torch_default', 'zeros', 'ones', 'keep'",
    ),
    # ------------------------------------------------------------------ YAML a naive loader chokes on
    validate(
        "spec-deep-flow-nesting",
        HEAD + "  - match: " + "[" * 5000 + "]" * 5000 + "\n",
        "spec.yaml:4:73: the spec nests deeper than 64 levels",
    ),
    validate(
        "spec-deep-block-nesting",
        "vsconf: 1\nseed: 7\nrules:\n" + "".join(" " * (2 * i) + "- \n" for i in range(1, 200)),
        "spec.yaml:67:129: the spec nests deeper than 64 levels",
    ),
    validate(
        "spec-alias-bomb",
        _bomb(),
        "spec.yaml:5:25: expanding alias *l3 makes the spec larger than 50000 nodes, the limit",
    ),
    validate(
        "spec-merge-key-bomb",
        "a: &a {x: 1, y: 2, z: 3, w: 4, v: 5, u: 6, t: 7, s: 8, r: 9, q: 10}\n"
        + "".join(f"{n}: &{n} {{<<: [{', '.join([f'*{p}'] * 10)}]}}\n" for p, n in zip("abcdef", "bcdefg")),
        "spec.yaml:5:17: expanding alias *d makes the spec larger than 50000 nodes, the limit",
    ),
    validate(
        "spec-recursive-alias",
        "vsconf: 1\nseed: 7\nrules: &rules\n  - match: '*'\n    init: *rules\n",
        "spec.yaml:5:11: alias *rules refers to a node that contains it; a spec cannot be recursive",
    ),
    validate(
        "spec-undefined-alias",
        HEAD + "  - match: '*'\n    init: *he\n",
        "spec.yaml:5:11: invalid YAML: alias *he is not defined; its anchor must come before it",
    ),
    validate(
        "spec-python-object-tag",
        HEAD + "  - match: '*'\n    init: !!python/object/apply:os.system ['touch pwned']\n",
        "spec.yaml:5:11: invalid YAML: unknown tag !!python/object/apply:os.system; a spec holds plain YAML values",
    ),
    validate(
        "spec-impossible-date",
        "vsconf: 1\nseed: 2024-02-30\nrules:\n" + RULE.format("zeros"),
        "spec.yaml:2:7: invalid YAML: '2024-02-30' is not a date",
    ),
    validate(
        "spec-explicit-int-tag",
        "vsconf: 1\nseed: !!int seven\nrules:\n" + RULE.format("zeros"),
        "spec.yaml:2:7: invalid YAML: 'seven' is not an integer",
    ),
    # ------------------------------------------------------------------ seeds
    validate(
        "spec-seed-5000-digits",
        "vsconf: 1\nseed: " + "7" * 5000 + "\nrules:\n" + RULE.format("zeros"),
        "spec.yaml:2:7: seed: an integer of 5000 digits; expected at most 40 digits",
    ),
    validate(
        "spec-seed-hex-digits",
        "vsconf: 1\nseed: 0x" + "f" * 5000 + "\nrules:\n" + RULE.format("zeros"),
        "spec.yaml:2:7: seed: an integer of 5000 digits; expected at most 40 digits",
    ),
    validate(
        "spec-seed-2-63",
        "vsconf: 1\nseed: 9223372036854775808\nrules:\n" + RULE.format("zeros"),
        "spec.yaml:2:7: seed: must be <= 2**63 - 1, got 9223372036854775808",
    ),
    validate(
        "spec-seed-negative",
        "vsconf: 1\nseed: -1\nrules:\n" + RULE.format("zeros"),
        "spec.yaml:2:7: seed: must be >= 0, got -1",
    ),
    validate(
        "spec-seed-float",
        "vsconf: 1\nseed: 7.0\nrules:\n" + RULE.format("zeros"),
        "spec.yaml:2:7: seed: expected an integer, got a number (7.0)",
    ),
    validate(
        "spec-seed-exponent",
        "vsconf: 1\nseed: 1e3\nrules:\n" + RULE.format("zeros"),
        "spec.yaml:2:7: seed: expected an integer, got a number (1000.0)",
    ),
    validate(
        "spec-seed-bool",
        "vsconf: 1\nseed: yes\nrules:\n" + RULE.format("zeros"),
        "spec.yaml:2:7: seed: expected an integer, got a boolean (true)",
    ),
    validate(
        "spec-seed-null",
        "vsconf: 1\nseed:\nrules:\n" + RULE.format("zeros"),
        "spec.yaml:2:6: seed: expected an integer, got null",
    ),
    validate(
        "spec-init-seed-float-and-huge",
        HEAD + "  - match: a\n    init: {seed: 1.5}\n  - match: b\n    init: {seed: " + "1" * 41 + "}\n",
        "spec.yaml:7:18: rules[1].init.seed: an integer of 41 digits; expected at most 40 digits",
    ),
    # ------------------------------------------------------------------ numbers that are not finite
    validate(
        "spec-non-finite-scales",
        HEAD
        + "  - match: a\n    init: {scale: .nan}\n  - match: b\n    init: {scale: .inf}\n  - match: c\n    init: {scale: 1.0e+999}\n",
        "spec.yaml:5:19: rules[0].init.scale: expected a finite number or an expression (a string), got .nan (not a number)",
        "spec.yaml:7:19: rules[1].init.scale: expected a finite number or an expression (a string), got .inf (infinity)",
        "spec.yaml:9:19: rules[2].init.scale: expected a finite number or an expression (a string), got .inf (infinity)",
    ),
    refused(
        "spec-constant-minus-inf",
        HEAD + "  - match: '*'\n    init: {constant: -.inf}\n",
        "spec.yaml:5:22: rules[0].init.constant: expected a finite number or an expression (a string), got -.inf (infinity)",
        argv=("apply", "m.npz", "spec.yaml", "-o", "out.npz"),
    ),
    Case(
        "spec-keras-constant-nan-and-defaults-inf",
        ("apply", "m.npz", "spec.yaml", "--in-place"),
        1,
        "spec.yaml:3:19: defaults.scale: expected a finite number or an expression (a string), got -.inf (infinity)\n"
        "spec.yaml:6:50: rules[0].init.config.value: expected a finite number or an expression (a string), got .nan (not a number)\n"
        "vsconf: error: spec.yaml: 2 problems\n",
        files={
            **MODEL,
            "spec.yaml": "vsconf: 1\nseed: 7\ndefaults: {scale: -.inf}\nrules:\n"
            "  - match: '*'\n    init: {class_name: Constant, config: {value: .NaN}}\n",
        },
        stdout="",
    ),
    # ------------------------------------------------------------------ patterns
    validate(
        "spec-regex-syntax",
        HEAD + "  - match: ['*.bias', 're:layer[0-9+\\.weight']\n    init: zeros\n",
        "spec.yaml:4:23: rules[0].match[1]: invalid regular expression: unterminated character set at position 5",
    ),
    validate(
        "spec-regex-refused-constructs",
        HEAD + "  - match: ['re:(a)\\1', 're:(?=a)a', 're:(?<!x)y', 're:(a)?(?(1)b|c)']\n    init: zeros\n",
        "spec.yaml:4:13: rules[0].match[0]: invalid regular expression: backreferences are not supported "
        "(vsconf matches regexes in linear time, without backtracking) at position 3",
        "spec.yaml:4:25: rules[0].match[1]: invalid regular expression: lookahead assertions (?=...) and (?!...) "
        "are not supported (vsconf matches regexes in linear time, without backtracking) at position 0",
        "spec.yaml:4:38: rules[0].match[2]: invalid regular expression: lookbehind assertions (?<=...) and (?<!...) "
        "are not supported (vsconf matches regexes in linear time, without backtracking) at position 0",
        "spec.yaml:4:52: rules[0].match[3]: invalid regular expression: conditional groups (?(id)yes|no) are not supported "
        "(vsconf matches regexes in linear time, without backtracking) at position 4",
    ),
    validate(
        "spec-regex-huge-repeat",
        HEAD + "  - match: 're:a{4294967296}'\n    init: zeros\n",
        "spec.yaml:4:12: rules[0].match: invalid regular expression: the repetition number is too large at position 1",
    ),
    validate(
        "spec-regex-nested-repeats",
        HEAD + "  - match: 're:((a{100}){100}){100}'\n    init: zeros\n",
        "spec.yaml:4:12: rules[0].match: invalid regular expression: pattern is too large: matching it in linear time "
        "takes an automaton of more than 10000 states (counted repeats such as {m,n} are expanded) at position 0",
    ),
    validate(
        "spec-op-and-input-mistakes",
        HEAD
        + "  - op: gemm\n    init: zeros\n  - match: '*'\n    input: B\n    init: zeros\n  - op: Conv\n    input: weight\n    init: zeros\n",
        "spec.yaml:4:9: rules[0].op: 'gemm' is not an ONNX operator; did you mean 'Gemm'?",
        "spec.yaml:7:5: rules[1].input: `input` needs `op` beside it",
        "spec.yaml:10:12: rules[2].input: Conv has no input 'weight'; its inputs are 'X', 'W', 'B'",
    ),
    refused(
        "spec-catastrophic-regex-on-a-long-name",
        HEAD
        + "  - match: 're:(a+)+b'\n    init: zeros\n  - match: 're:(a|aa)*c'\n    init: zeros\n  - match: '*'\n    init: keep\n",
        "spec.yaml: rules[0] (line 4): matches no tensor (match 're:(a+)+b'); mark it `optional: true` if that is expected\n"
        "spec.yaml: rules[1] (line 6): matches no tensor (match 're:(a|aa)*c'); mark it `optional: true` if that is expected",
        argv=("plan", "long.npz", "spec.yaml"),
        model=LONG_MODEL,
    ),
    refused(
        "spec-catastrophic-glob-on-a-long-name",
        HEAD
        + "  - match: '*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b'\n    init: zeros\n  - match: '*a?*a?*a?*a?*a?*a?*a?*a?*[bc]'\n    init: zeros\n",
        "spec.yaml: rules[0] (line 4): matches no tensor (match '*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b'); mark it `optional: true` if that is expected\n"
        "spec.yaml: rules[1] (line 6): matches no tensor (match '*a?*a?*a?*a?*a?*a?*a?*a?*[bc]'); mark it `optional: true` if that is expected",
        argv=("apply", "long.npz", "spec.yaml"),
        model=LONG_MODEL,
    ),
    # ------------------------------------------------------------------ several files at once
    Case(
        "spec-validate-several-bad-files",
        ("validate", "a.yaml", "missing.yaml", "b.yaml", "c.yaml"),
        1,
        "a.yaml:2:7: seed: expected an integer, got a number (7.0)\n"
        "vsconf: error: a.yaml: 1 problem\n"
        "missing.yaml: cannot read the spec: No such file or directory\n"
        "vsconf: error: missing.yaml: 1 problem\n"
        "b.yaml:1:1: the spec is empty; expected a mapping with `vsconf: 1`, `seed` and `rules`\n"
        "vsconf: error: b.yaml: 1 problem\n"
        "c.yaml:1:1: missing required key 'rules'\n"
        "c.yaml:2:7: seed: must be >= 0, got -3\n"
        "vsconf: error: c.yaml: 2 problems\n",
        files={
            "a.yaml": "vsconf: 1\nseed: 7.0\nrules:\n" + RULE.format("zeros"),
            "b.yaml": "",
            "c.yaml": "vsconf: 1\nseed: -3\n",
        },
        stdout="",
    ),
]
