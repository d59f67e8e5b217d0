"""The op table is data keyed by (domain, op type, input name), aware of opset versions:
every row names a real input of a real operator, and the roles read from it are the
operator's own at every version onnx knows."""

from __future__ import annotations

import onnx.defs
import pytest

from vsconf.matching import ROLES
from vsconf.formats.onnx.optable import (
    _CONTRIB_INPUTS,
    FIXED_INPUTS,
    INPUT_ROWS,
    MS,
    ONNX,
    OP_ROWS,
    PARAMETER_ROLES,
    formal_inputs,
    input_row,
    looks_through,
    weight_positions,
)
from vsconf.spec import schema_text

NORMALIZATIONS = ["BatchNormalization", "LayerNormalization", "GroupNormalization", "InstanceNormalization", "RMSNormalization"]
FAN_RULES = {None, "conv", "gemm", "matmul", "rnn", "embedding", "dense"}


def _versions(op: str) -> list[int]:
    return sorted({s.since_version for s in onnx.defs.get_all_schemas_with_history() if s.name == op and s.domain == ""})


def test_every_row_names_an_input_the_operator_has_in_its_opset_range():
    for (domain, op, name), rows in INPUT_ROWS.items():
        for row in rows:
            assert row.role in PARAMETER_ROLES | FIXED_INPUTS | {"activation"}, (op, name, row.role)
            assert row.fans in FAN_RULES, (op, name, row.fans)
            if domain == MS:
                assert name in _CONTRIB_INPUTS[(domain, op)], (op, name)
                continue
            versions = [v for v in _versions(op) if v >= row.since and (row.until is None or v <= row.until)]
            assert versions, (op, name, "no opset version in the row's range")
            for version in versions:
                assert name in formal_inputs(domain, op, version), (op, name, version)


def test_rows_of_one_input_never_overlap_in_versions():
    for key, rows in INPUT_ROWS.items():
        spans = sorted((r.since, r.until if r.until is not None else 10**6) for r in rows)
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:])), key


@pytest.mark.parametrize("op", NORMALIZATIONS)
def test_every_input_of_every_normalization_at_every_opset_has_a_row(op):
    expected = {"scale": "norm_scale", "Scale": "norm_scale", "B": "norm_bias", "bias": "norm_bias",
                "mean": "running_stat", "var": "running_stat", "input_mean": "running_stat", "input_var": "running_stat",
                "X": "activation", "input": "activation"}
    for version in _versions(op):
        for name in formal_inputs(ONNX, op, version):
            row = input_row(ONNX, op, name, version)
            assert row is not None and row.role == expected[name], (op, version, name, row)


def test_batchnorm_statistics_are_running_statistics_under_both_names():
    assert input_row("", "BatchNormalization", "mean", 9).role == "running_stat"
    assert input_row("ai.onnx", "BatchNormalization", "input_var", 15).role == "running_stat"
    # the names do not swap meaning across the change at opset 14
    assert input_row("", "BatchNormalization", "input_mean", 9) is None
    assert input_row("", "BatchNormalization", "mean", 14) is None


def test_onnx_attention_reads_activations_and_has_no_weight_while_the_contrib_one_has():
    for version in (23, 24, 25):
        for name in ("Q", "K", "V"):
            row = input_row(ONNX, "Attention", name, version)
            assert row is not None and row.role not in PARAMETER_ROLES and row.fans is None
        assert weight_positions(ONNX, "Attention", version) == ()
    assert input_row(ONNX, "Attention", "K", 22) is None  # no ONNX Attention before opset 23
    weights = input_row(MS, "Attention", "weights", 1)
    assert (weights.role, weights.fans) == ("weight", "dense")
    assert weight_positions(MS, "Attention", 1) == (1,)


@pytest.mark.parametrize("op, positions", [("Conv", (1,)), ("ConvTranspose", (1,)), ("Gemm", (1, 0)), ("MatMul", (1, 0)),
                                           ("LSTM", (1,)), ("GRU", (1,)), ("RNN", (1,)), ("Add", ()), ("Relu", ())])
def test_weight_inputs_come_from_the_table(op, positions):
    assert weight_positions(ONNX, op, 17) == positions


def test_look_through_ops_are_the_onnx_ones_only():
    for op in ("Identity", "Cast", "Transpose", "Unsqueeze", "Squeeze", "Slice", "Split", "Concat"):
        assert looks_through("", op) and looks_through("ai.onnx", op)
        assert not looks_through("com.example", op)
    assert not looks_through("", "Reshape")
    assert all(not row.look_through or domain == ONNX for (domain, _), row in OP_ROWS.items())


def test_roles_are_the_schema_roles():
    import json

    enum = json.loads(schema_text())["$defs"]["roleName"]["enum"]
    assert enum == [*ROLES, "any"]
