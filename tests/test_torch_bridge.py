"""vsconf.torch: a spec applied to live modules gives the file route's bits (#22).

The file route is ``vsconf.apply_state_dict`` on the module's state dict with one name per
tensor (a tied name dropped, as ``save_pretrained`` saves it), whose values are those
``vsconf apply`` writes; the bridge must give the same bits in every dtype, from real and
from ``meta`` parameters, and on DTensors whatever the mesh and placement.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import vsconf  # noqa: E402
import vsconf.torch as vt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "configs" / "recipes"
TORCH_SPEC = """\
vsconf: 1
seed: 11
layout: torch
rules:
  - match: "*bias_ih_l*"
    optional: true
    parts: {axis: 0, count: 4, inits: [zeros, ones, zeros, zeros]}
  - match: "*bias*"
    optional: true
    init: zeros
  - match: "*bn.weight"
    optional: true
    init: ones
  - match: "*weight_hh_l*"
    optional: true
    init: {orthogonal: {gain: 1}}
  - match: ["*weight", "*weight_ih_l*"]
    init: {preset: he_uniform}
  - match: "*running_mean"
    role: running_stat
    optional: true
    init: zeros
  - match: "*running_var"
    role: running_stat
    optional: true
    init: ones
"""


def _numpy(tensor) -> np.ndarray:
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def file_route(module, spec, **kw) -> dict[str, np.ndarray]:
    """apply_state_dict on the module's state dict, one name per tensor, zeros as values."""
    seen, state = set(), {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        state[name] = np.zeros(tuple(tensor.shape), _numpy(torch.zeros((), dtype=tensor.dtype)).dtype)
    return vsconf.apply_state_dict(state, spec, **kw)


def assert_same_bits(module, expected: dict[str, np.ndarray], names) -> None:
    state = module.state_dict()
    for name in names:
        got = _numpy(state[name])
        assert got.dtype == expected[name].dtype and got.shape == expected[name].shape, name
        assert got.tobytes() == expected[name].tobytes(), name


class SmallCnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.grouped = torch.nn.Conv2d(8, 8, 3, groups=4)
        self.bn = torch.nn.BatchNorm2d(8)
        self.up = torch.nn.ConvTranspose2d(8, 4, 2)
        self.head = torch.nn.Linear(4, 5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_modules_get_the_file_routes_bits(kind, dtype, tmp_path):
    spec = vsconf.parse_spec(TORCH_SPEC)
    module = (SmallCnn() if kind == "cnn" else torch.nn.LSTM(6, 8, num_layers=2)).to(dtype)
    result = vt.init_module(module, spec)
    expected = file_route(module, spec)
    assert_same_bits(module, expected, result.filled)
    assert set(result.filled) == {e.name for e in result.plan if e.changes}
    if kind == "lstm":  # the forget gate's quarter of each bias_ih is ones, the rest zero
        bias = _numpy(module.bias_ih_l0).astype(np.float32)
        assert (bias[8:16] == 1).all() and (bias[:8] == 0).all() and (bias[16:] == 0).all()
    assert vt.verify_module(module, spec) == []
    with torch.no_grad():
        next(module.parameters()).view(-1)[0] += 1
    assert [p.tensor for p in vt.verify_module(module, spec)] == [next(iter(result.filled))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("meta", [False, True], ids=["real", "meta"])
def test_a_tied_gpt2_is_filled_once_and_stays_tied(dtype, meta, tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=97, n_positions=16)
    if meta:
        with torch.device("meta"):
            model = transformers.GPT2LMHeadModel(config).to(dtype)
    else:
        model = transformers.GPT2LMHeadModel(config).to(dtype)
    recipe = RECIPES / "hf_gpt2.yaml"
    result = vt.init_module(model, recipe, vars=config.to_dict(), lock=tmp_path / "gpt2.lock")
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.lm_head.weight.device.type == "cpu"
    assert result.plan.aliases == {"lm_head.weight": "transformer.wte.weight"}
    assert "lm_head.weight" not in result.filled
    expected = file_route(model, recipe, vars=config.to_dict())
    assert_same_bits(model, expected, result.filled)
    assert vt.verify_module(model, recipe, vars=config.to_dict(), lock=tmp_path / "gpt2.lock") == []
    # the lock's vars make the run again; other vars make other values
    assert vt.verify_module(model, recipe, vars={**config.to_dict(), "n_layer": 24})


def test_a_lock_is_never_written_over_unless_forced(tmp_path):
    spec = vsconf.parse_spec(TORCH_SPEC)
    module = SmallCnn()
    vt.init_module(module, spec, lock=tmp_path / "m.lock")
    with pytest.raises(vsconf.VsconfError):
        vt.init_module(module, spec, lock=tmp_path / "m.lock")
    vt.init_module(module, spec, lock=tmp_path / "m.lock", force=True)


def test_layout_auto_reads_the_module_classes():
    """Under layout: auto a state dict guesses tf's rule; a live module knows its classes."""
    spec = vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: '*.weight'\n    init: he_normal\n  - match: '*.bias'\n    init: zeros\n")
    plan = vt.plan_module(SmallCnn(), spec)
    assert (plan.entry("conv.weight").fan_in, plan.entry("conv.weight").fans_from) == (27, "Conv2d weight")
    assert plan.entry("up.weight").fan_in == 8 * 4  # ConvTranspose: [in, out, k, k], in = axis 0
    assert plan.entry("head.weight").fan_in == 4


def test_module_classes_give_roles_whatever_the_names_say():
    """A state dict guesses roles from names; a module's classes know them (along the MRO)."""
    module = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.LayerNorm(6), torch.nn.Embedding(5, 6), torch.nn.MultiheadAttention(6, 2),
        torch.nn.GRU(6, 4, num_layers=2, bidirectional=True),
    )
    spec = vsconf.parse_spec(
        "vsconf: 1\nseed: 1\nlayout: torch\nrules:\n"
        "  - match: '*'\n    role: norm_scale\n    init: ones\n"
        "  - match: '*'\n    role: embedding\n    init: {normal: {std: 0.02}}\n"
        "  - match: '*'\n    init: zeros\n"
    )
    plan = vt.plan_module(module, spec)
    roles = {entry.name: (entry.role, entry.role_from, entry.role_guessed) for entry in plan}
    assert roles["1.weight"] == ("norm_scale", "module LayerNorm weight", False)  # the name "1" says nothing
    assert roles["1.bias"][0] == "norm_bias" and roles["2.weight"][:2] == ("embedding", "module Embedding weight")
    assert roles["3.out_proj.weight"][:2] == ("weight", "module NonDynamicallyQuantizableLinear weight")  # a Linear
    assert roles["4.weight_hh_l1_reverse"][:2] == ("weight", "module GRU weight_hh_l1_reverse")
    assert roles["4.bias_ih_l0"][0] == "bias"
    result = vt.init_module(module, spec)
    assert torch.equal(module[1].weight, torch.ones(6)) and float(module[2].weight.detach().std()) > 0
    assert {"1.weight", "2.weight"} <= set(result.filled)
    # the file route, by names alone, finds no norm scale and no embedding here
    with pytest.raises(vsconf.MatchError, match="role 'norm_scale'"):
        file_route(module, spec)


def test_plan_text_shows_known_roles_and_the_tied_names():
    module = torch.nn.Module()
    module.wte = torch.nn.Embedding(5, 4)
    module.norm = torch.nn.LayerNorm(4)
    module.head = torch.nn.Linear(4, 5, bias=False)
    module.head.weight = module.wte.weight
    text = vsconf.plan_text(vt.plan_module(module, vsconf.parse_spec(TORCH_SPEC.replace("*bn.weight", "norm.weight"))))
    lines = text.splitlines()
    assert lines[0].split() == ["name", "shape", "dtype", "role", "rule", "init", "fan_in", "fan_out", "std/limit", "fans", "from"]
    assert next(line for line in lines if line.startswith("norm.weight")).split()[3] == "norm_scale"  # not a guess
    assert next(line for line in lines if line.startswith("wte.weight")).split()[3] == "embedding"
    assert lines[-2:] == ["1 tied name(s), each held once under the tensor it is:", "  head.weight = wte.weight"]


def test_layout_auto_gives_unknown_classes_torchs_shape_rule_and_never_the_tf_one():
    class Custom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.kernel = torch.nn.Parameter(torch.zeros(6, 3, 2))

    module = torch.nn.Sequential(Custom(), torch.nn.Linear(3, 2))
    spec = vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: he_normal\n")
    plan = vt.plan_module(module, spec)
    entry = plan.entry("0.kernel")
    assert (entry.fan_in, entry.fan_out, entry.fans_from) == (3 * 2, 6 * 2, "torch's shape rule (Custom kernel)")
    assert not [w for w in plan.warnings if "tf rule" in w.message]


def test_tensors_sharing_memory_are_refused_before_anything_changes(tmp_path):
    fused = torch.zeros(6, 4)
    module = torch.nn.Module()
    module.q = torch.nn.Parameter(fused[:3])
    module.k = torch.nn.Parameter(fused[2:])  # row 2 is both q's and k's
    module.ok = torch.nn.Parameter(torch.zeros(4))
    spec = vsconf.parse_spec("vsconf: 1\nseed: 1\nlayout: torch\nrules:\n  - match: '*'\n    init: {normal: {std: 1}}\n")
    with pytest.raises(vsconf.ModelError, match="'q' and 'k' share memory"):
        vt.init_module(module, spec, lock=tmp_path / "m.lock")
    assert not fused.any() and not module.ok.any() and not (tmp_path / "m.lock").exists()
    expanded = torch.nn.Module()
    expanded.w = torch.nn.Parameter(torch.zeros(4).expand(3, 4))
    with pytest.raises(vsconf.ModelError, match="'w': its elements share memory"):
        vt.init_module(expanded, spec)
    # views that do not overlap are two tensors like any others
    module.k = torch.nn.Parameter(fused[3:])
    vt.init_module(module, spec)
    assert fused.all()


def test_a_lock_is_checked_before_the_module_changes(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(TORCH_SPEC)
    (tmp_path / "taken.lock").write_text("mine")
    (tmp_path / "folder").mkdir()
    for lock, force, message in [
        (tmp_path / "taken.lock", False, "exists; pass force=True"),
        (spec_file, True, "the lock would replace the spec"),
        (tmp_path / "folder", True, "it is a folder"),
        (tmp_path / "taken.lock" / "x.lock", False, "is not a folder"),
    ]:
        module = SmallCnn()
        before = {k: v.clone() for k, v in module.state_dict().items()}
        with pytest.raises(vsconf.ModelError, match=message):
            vt.init_module(module, spec_file, lock=lock, force=force)
        assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert (tmp_path / "taken.lock").read_text() == "mine" and spec_file.read_text() == TORCH_SPEC


def test_verify_says_how_many_elements_differ(tmp_path):
    spec = vsconf.parse_spec(TORCH_SPEC)
    module = SmallCnn()
    vt.init_module(module, spec, lock=tmp_path / "m.lock")
    assert vt.verify_module(module, spec, lock=tmp_path / "m.lock") == []
    with torch.no_grad():
        module.conv.weight[0, 0, :2, 0] = 0.5
    problems = vt.verify_module(module, spec, lock=tmp_path / "m.lock")
    assert [p.tensor for p in problems] == ["conv.weight", "conv.weight"]
    assert problems[0].message.startswith("2 of 216 elements differ from what the spec produces (max |difference| ")
    assert "differs from the lock's" in problems[1].message


# --------------------------------------------------------------------------- DTensor


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        meshes = {"1d": init_device_mesh("cpu", (world,))}
        if world == 4:
            meshes["2d"] = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
        spec = vsconf.parse_spec(TORCH_SPEC)
        results = {}
        for mesh_name, mesh in meshes.items():
            placements = [[Shard(0)], [Shard(1)], [Replicate()]] if mesh.ndim == 1 else [
                [Shard(0), Shard(1)], [Shard(1), Replicate()], [Replicate(), Shard(0)], [Shard(0), Shard(0)]
            ]
            for k, placement in enumerate(placements):
                module = torch.nn.Sequential(torch.nn.Linear(12, 10), torch.nn.LSTM(6, 8))
                for name, param in list(module.named_parameters()):
                    owner = module.get_submodule(name.rpartition(".")[0])
                    leaf = name.rpartition(".")[2]
                    place = placement if param.ndim == 2 else [Replicate()] * mesh.ndim
                    setattr(owner, leaf, torch.nn.Parameter(distribute_tensor(torch.zeros_like(param), mesh, place)))
                vt.init_module(module, spec)
                for name, param in module.named_parameters():
                    results[f"{mesh_name}/{k}/{name}"] = param.full_tensor().detach().numpy()
        # tensor parallel: colwise and rowwise Linear pairs
        tp_mesh = meshes["1d"]
        mlp = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 12))
        parallelize_module(mlp, tp_mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})
        vt.init_module(mlp, spec)
        for name, param in mlp.named_parameters():
            results[f"tp/{name}"] = param.full_tensor().detach().numpy()
        # FSDP2: every parameter sharded on dim 0 over the data-parallel mesh
        from torch.distributed.fsdp import fully_shard

        sharded = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 12))
        fully_shard(sharded, mesh=meshes["1d"])
        vt.init_module(sharded, spec)
        for name, param in sharded.named_parameters():
            results[f"fsdp/{name}"] = param.full_tensor().detach().numpy()
        # a lock under tensor parallel: rank 0 writes it, every rank verifies against it,
        # and a changed element is found by the rank that holds it
        lock = os.path.join(os.path.dirname(out), "tp.lock")
        mlp = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 12))
        parallelize_module(mlp, tp_mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})
        written = vt.init_module(mlp, spec, lock=lock).lock
        dist.barrier()
        verdicts = {"wrote": written is not None, "clean": [p.message for p in vt.verify_module(mlp, spec, lock=lock)]}
        if rank == world - 1:
            with torch.no_grad():
                mlp[0].weight.to_local()[0, 0] += 1
        verdicts["changed"] = [(p.tensor, p.message) for p in vt.verify_module(mlp, spec, lock=lock)]
        with open(f"{out}.{rank}.json", "w") as handle:
            json.dump(verdicts, handle)
        if rank == 0:
            np.savez(out, **results)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 4])
def test_dtensors_on_every_mesh_and_placement_equal_single_process_init(world, tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "gathered.npz")
    mp.spawn(_rank, args=(world, _free_port(), out), nprocs=world, join=True)
    gathered = np.load(out)
    spec = vsconf.parse_spec(TORCH_SPEC)
    single = {}
    for module_name, module in (("seq", torch.nn.Sequential(torch.nn.Linear(12, 10), torch.nn.LSTM(6, 8))),
                                ("tp", torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 12)))):
        vt.init_module(module, spec)
        single[module_name] = {name: p.detach().numpy() for name, p in module.named_parameters()}
    assert len(gathered.files) > 10
    for key in gathered.files:
        name = key.rpartition("/")[2]
        reference = single["tp" if key.startswith(("tp/", "fsdp/")) else "seq"][name]
        np.testing.assert_array_equal(gathered[key], reference, err_msg=key)
    # the lock written under tensor parallel is the single-process lock, byte for byte in
    # every record; each rank's verdicts
    mlp = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 12))
    vt.init_module(mlp, spec, lock=tmp_path / "single.lock")
    assert json.loads((tmp_path / "tp.lock").read_text())["tensors"] == json.loads((tmp_path / "single.lock").read_text())["tensors"]
    verdicts = [json.loads(Path(f"{out}.{rank}.json").read_text()) for rank in range(world)]
    assert [v["wrote"] for v in verdicts] == [True] + [False] * (world - 1)
    assert all(v["clean"] == [] for v in verdicts)
    assert all(v["changed"] == [] for v in verdicts[:-1])
    assert verdicts[-1]["changed"] == [["0.weight", f"1 of {16 // world * 12} elements differ from what the spec produces (max |difference| 1)"]]


GOOD = vsconf.parse_spec(TORCH_SPEC)


@pytest.mark.parametrize(
    "module, spec, more, error, message",
    [
        ({"w": torch.zeros(2)}, GOOD, {}, TypeError, "torch.nn.Module"),
        (None, 3, {}, TypeError, "spec"),
        (None, GOOD, {"vars": {"fan_in": 1}}, ValueError, "vsconf gives itself"),
        (None, GOOD, {"jobs": 0}, ValueError, "jobs"),
        (None, GOOD, {"force": "yes"}, TypeError, "force"),
        (None, "/nonexistent/spec.yaml", {}, vsconf.VsconfError, "spec.yaml"),
        (None, vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: nope\n    init: zeros\n"), {}, vsconf.MatchError, "matches no tensor"),
    ],
    ids=["not-a-module", "spec-not-a-path", "reserved-var", "bad-jobs", "bad-force", "missing-spec", "rule-matches-nothing"],
)
def test_bad_arguments_are_clear_errors_and_change_nothing(module, spec, more, error, message):
    module = torch.nn.Linear(3, 2) if module is None else module
    before = {k: v.clone() for k, v in module.state_dict().items()} if isinstance(module, torch.nn.Module) else None
    with pytest.raises(error, match=message):
        vt.init_module(module, spec, **more)
    if before is not None:
        assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_meta_buffers_outside_the_state_dict_are_named_and_warned_of():
    class Rotary(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)
            self.register_buffer("inv_freq", torch.arange(4.0), persistent=False)

    with torch.device("meta"):
        module = Rotary()
    with pytest.warns(UserWarning, match="inv_freq"):
        result = vt.init_module(module, vsconf.parse_spec(TORCH_SPEC))
    assert result.uninitialised == ("inv_freq",) and module.inv_freq.device.type == "cpu"
    assert set(result.filled) == {"proj.weight", "proj.bias"}


def test_a_meta_cnn_is_materialised_filled_and_its_unfilled_tensors_named():
    spec = vsconf.parse_spec(TORCH_SPEC)
    with torch.device("meta"):
        module = SmallCnn()
    with pytest.warns(UserWarning, match="num_batches_tracked"):
        result = vt.init_module(module, spec)
    assert result.uninitialised == ("bn.num_batches_tracked",)  # an integer: no rule fills it
    assert_same_bits(module, file_route(SmallCnn(), spec), result.filled)
