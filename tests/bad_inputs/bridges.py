"""Hostile inputs to the framework bridges (#22): ``vsconf.torch``, ``vsconf.jax`` and
``vsconf.keras``, called as a training script calls them.

Each case builds a live model (:data:`MODELS` in ``tests/test_bridge_bad_inputs.py`` names
the builders), calls the bridge with the case's arguments in a fresh folder holding the
case's files, and must raise the case's exception with exactly the case's message
(``{dir}`` stands for the folder).  Every case also keeps the invariants of the CLI corpus:
the model's tensors hold the same bytes as before (a module on ``meta`` stays there), every
file in the folder is unchanged, and no file appears.

A ``spec`` given as text is written to ``spec.yaml`` and passed as that path; a case whose
spec is not text passes it as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HEAD = "vsconf: 1\nseed: 3\nlayout: torch\nrules:\n"
GOOD = HEAD + "  - match: '*'\n    init: {normal: {std: 0.5}}\n"
TF_GOOD = GOOD.replace("layout: torch", "layout: tf")


@dataclass(frozen=True)
class BridgeCase:
    """One hostile call and the error it must raise.

    ``bridge``: ``torch``, ``jax`` or ``keras``; ``model``: a builder's name; ``call``: the
    keyword arguments after the model (``spec`` as text is written to ``spec.yaml``);
    ``error``: the exception's class name; ``message``: ``str(exception)`` exactly.
    """

    id: str
    bridge: str
    model: str
    call: Mapping[str, Any]
    error: str
    message: str
    files: Mapping[str, str] = field(default_factory=dict)


def torch_case(case_id: str, error: str, message: str, model: str = "linear", files: Mapping[str, str] | None = None, **call: Any) -> BridgeCase:
    return BridgeCase(case_id, "torch", model, {"spec": GOOD, **call}, error, message, dict(files or {}))


def jax_case(case_id: str, error: str, message: str, model: str = "dense", files: Mapping[str, str] | None = None, **call: Any) -> BridgeCase:
    return BridgeCase(case_id, "jax", model, {"spec": TF_GOOD, **call}, error, message, dict(files or {}))


def keras_case(case_id: str, error: str, message: str, model: str = "dense", files: Mapping[str, str] | None = None, **call: Any) -> BridgeCase:
    return BridgeCase(case_id, "keras", model, {"spec": TF_GOOD, **call}, error, message, dict(files or {}))


BRIDGE_CASES: list[BridgeCase] = [
    # ------------------------------------------------------------------ torch: arguments
    torch_case("torch-not-a-module", "TypeError", "Argument `module` must be a torch.nn.Module. Received: dict", model="dict"),
    torch_case("torch-spec-missing", "SpecError", "{dir}/missing.yaml: cannot read the spec: No such file or directory", spec="{dir}/missing.yaml"),
    torch_case("torch-spec-bad-yaml", "SpecError", "{dir}/spec.yaml:3:1: invalid YAML: expected the node content, but found '<stream end>'", spec="vsconf: 1\nrules: [\n"),
    torch_case("torch-spec-a-number", "TypeError", "Argument `spec` must be a path (str or os.PathLike). Received: int 3", spec=3),
    torch_case("torch-seed-negative", "ValueError", "Argument `seed` must satisfy 0 <= seed < 2**63. Received: -1", seed=-1),
    torch_case("torch-seed-bool", "TypeError", "Argument `seed` must be an integer or None. Received: bool True", seed=True),
    torch_case("torch-jobs-zero", "ValueError", "Argument `jobs` must be from 1 to 1024, or None. Received: 0", jobs=0),
    torch_case("torch-force-a-string", "TypeError", "Argument `force` must be True or False. Received: str 'yes'", force="yes"),
    torch_case("torch-vars-a-list", "TypeError", "Argument `vars` must be a mapping of names to numbers or None. Received: list [1, 2]", vars=[1, 2]),
    torch_case("torch-vars-reserved-name", "ValueError", "Argument `vars`: 'fan_in' is a name vsconf gives itself", vars={"fan_in": 3}),
    torch_case("torch-device-unknown", "ValueError", "Argument `device` must name a device torch knows (cpu, cuda:0...). Received: 'nope'", device="nope", model="meta-linear"),
    torch_case("torch-device-meta", "ValueError", "Argument `device` must be a device with memory, to materialise the module on. Received: 'meta'", device="meta", model="meta-linear"),
    torch_case("torch-device-a-float", "TypeError", "Argument `device` must be a torch.device, a str or an int. Received: float", device=1.5),
    # ------------------------------------------------------------------ torch: the spec against the module
    torch_case("torch-rule-matches-nothing", "MatchError", "{dir}/spec.yaml: rules[0] (line 5): matches no tensor (match 'nope.weight'); did you mean 'weight'?", spec=HEAD + "  - match: nope.weight\n    init: zeros\n"),
    torch_case("torch-rule-names-a-tied-alias", "MatchError", "{dir}/spec.yaml: rules[0] (line 5): matches no tensor (match 'head.weight'); 'head.weight' is tied to 'wte.weight', one tensor filled once under that name: match 'wte.weight'", model="tied", spec=HEAD + "  - match: head.weight\n    init: zeros\n  - match: wte.weight\n    init: zeros\n"),
    torch_case("torch-orthogonal-too-large-on-meta", "MatchError", "{dir}/spec.yaml: rules[0] (line 5): tensor 'weight': orthogonal: An orthogonal tensor of shape (2048, 4096) is a 2048 x 4096 matrix of 8388608 elements, above vsconf's limit of 4194304 (2048 x 2048): its QR costs rows x cols x min(rows, cols) and would take about 14 s", model="meta-huge", spec=HEAD + "  - match: '*weight'\n    init: {orthogonal: {gain: 1}}\n  - match: '*bias'\n    init: zeros\n"),
    torch_case("torch-meta-spec-fails-stays-on-meta", "MatchError", "{dir}/spec.yaml: rules[1] (line 7): tensor 'bias': orthogonal: Only tensors with 2 or more dimensions are supported. Received: shape=(2,)", model="meta-linear", spec=HEAD + "  - match: weight\n    init: {orthogonal: {gain: 1}}\n  - match: bias\n    init: {orthogonal: {gain: 1}}\n"),
    torch_case("torch-only-integers", "MatchError", "{dir}/spec.yaml: rules[0] (line 5): matches no tensor (match '*'); mark it `optional: true` if that is expected", model="integers"),
    torch_case("torch-views-overlap", "ModelError", "tensors 'q' and 'k' share memory without being one tensor (views of one storage): filling one would write over the other; make them separate parameters, or tie them (one Parameter)", model="overlap"),
    torch_case("torch-expanded-parameter", "ModelError", "tensor 'w': its elements share memory (an expanded view), so no values fit it", model="expanded"),
    # ------------------------------------------------------------------ torch: the lock
    torch_case("torch-lock-exists", "ModelError", "{dir}/m.lock: exists; pass force=True to overwrite it", lock="{dir}/m.lock", files={"m.lock": "mine\n"}),
    torch_case("torch-lock-is-the-spec", "ModelError", "{dir}/spec.yaml: the lock would replace the spec", lock="{dir}/spec.yaml", force=True),
    torch_case("torch-lock-is-a-folder", "ModelError", "{dir}/sub: cannot write the lock: it is a folder", lock="{dir}/sub", force=True, files={"sub/keep": "x"}),
    torch_case("torch-lock-under-a-file", "ModelError", "{dir}/file/m.lock: cannot write the lock: {dir}/file is not a folder", lock="{dir}/file/m.lock", files={"file": "x"}),
    torch_case("torch-lock-empty-path", "ValueError", "Argument `lock` must be a non-empty path without NUL characters. Received: ''", lock=""),
    torch_case("torch-lock-nul", "ValueError", "Argument `lock` must be a non-empty path without NUL characters. Received: 'm\\x00.lock'", lock="m\0.lock"),
    torch_case("torch-lock-bytes", "TypeError", "Argument `lock` must be a path (str or os.PathLike) or None. Received: bytes b'm.lock'", lock=b"m.lock"),
    # ------------------------------------------------------------------ jax
    jax_case(
        "jax-two-leaves-one-name", "ValueError",
        "Argument `params_or_shapes` has two leaves named 'params.kernel' (key paths joined with '.')", model="two-names",
    ),
    jax_case("jax-shapes-left-unfilled", "MatchError", "tensor 'params.bias': is a jax.ShapeDtypeStruct no rule fills (action unmatched): it has no values to return; give a rule that fills it, or pass an array for it", model="shapes", spec=TF_GOOD.replace("match: '*'", "match: '*.kernel'")),
    jax_case("jax-sharding-a-string", "TypeError", "Argument `sharding` must be one jax.sharding.Sharding or a pytree of them (or None) shaped as the params. Received: str", sharding="all"),
    jax_case("jax-sharding-tree-differs", "ValueError", "Argument `sharding` must be one jax.sharding.Sharding or a pytree of them (or None) shaped as the params. Received: a pytree whose leaves differ (missing ['params.bias', 'params.kernel'], extra ['params.other'])", sharding={"params": {"other": None}}),
    jax_case("jax-lock-exists", "ModelError", "{dir}/p.lock: exists; pass force=True to overwrite it", lock="{dir}/p.lock", files={"p.lock": "mine\n"}),
    jax_case("jax-lock-is-the-spec", "ModelError", "{dir}/spec.yaml: the lock would replace the spec", lock="{dir}/spec.yaml", force=True),
    jax_case("jax-force-a-string", "TypeError", "Argument `force` must be True or False. Received: int 1", force=1),
    # ------------------------------------------------------------------ keras
    keras_case("keras-not-a-model", "TypeError", "Argument `model` must be a Keras 3 model or layer (keras.Model, keras.layers.Layer). Received: dict", model="dict"),
    keras_case("keras-unbuilt", "ModelError", "unbuilt: the model is not built, so it has no weights yet: build it first (give it a keras.Input, call model.build(input_shape), or call it on data)", model="unbuilt"),
    keras_case("keras-rule-matches-nothing", "MatchError", "{dir}/spec.yaml: rules[0] (line 5): matches no tensor (match 'nope/kernel'); did you mean 'net/fc/kernel'?", spec=TF_GOOD.replace("match: '*'", "match: nope/kernel")),
    keras_case("keras-lock-exists", "ModelError", "{dir}/k.lock: exists; pass force=True to overwrite it", lock="{dir}/k.lock", files={"k.lock": "mine\n"}),
    keras_case("keras-lock-is-the-spec", "ModelError", "{dir}/spec.yaml: the lock would replace the spec", lock="{dir}/spec.yaml", force=True),
    keras_case("keras-jobs-zero", "ValueError", "Argument `jobs` must be from 1 to 1024, or None. Received: 0", jobs=0),
]
