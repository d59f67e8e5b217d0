"""The commands of ``vsconf``: argument parsing and printing over the Python API.

:mod:`vsconf.cli` runs them and turns every failure into one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from vsconf import api, arguments
from vsconf._version import __version__
from vsconf.engine import Plan, PlanEntry
from vsconf.errors import Problem, SpecError, printable
from vsconf.spec import load_spec, schema_text
from vsconf.spec.sidefiles import read_vars_file


def _say(line: str, *, stderr: bool = False) -> None:
    """Print one line; names in it (tensors, files, nodes) cannot break it into more."""
    print(printable(line), file=sys.stderr if stderr else sys.stdout)


def _warn(lines: Sequence[str]) -> None:
    for line in lines:
        _say(line, stderr=True)


def _warn_problems(problems: Sequence[Problem]) -> None:
    _warn([problem.format("warning") for problem in problems])


# --------------------------------------------------------------------------- plan tables


def _g(value: object) -> str:
    """A parameter as the plan shows it: a number compactly, an expression as written."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _init_text(entry: PlanEntry) -> str:
    if entry.action == "fill" and entry.distribution == "parts":
        return f"{len(entry.parts)} parts along axis {entry.parts_axis}"
    if entry.action == "fill" and entry.distribution == "formula":
        return f"formula {entry.formula}"
    if entry.action == "fill" and entry.distribution in ("orthogonal", "identity"):
        layout = f", {entry.layout}" if entry.layout else ""
        return f"{entry.distribution}(gain={_g(entry.gain)}{layout})"
    if entry.action == "fill" and entry.distribution == "dirac":
        return f"dirac(groups={entry.groups})"
    if entry.action == "fill" and isinstance(entry.init, dict):
        for kind in ("normal", "truncated_normal", "uniform", "same_as"):
            if kind == "same_as" and kind in entry.init:
                return f"same_as {entry.init[kind]}"
            if kind in entry.init:
                params = ", ".join(f"{key}={_g(value)}" for key, value in entry.init[kind].items())
                return f"{kind}({params})"
    if entry.action == "fill":
        vs = entry.init
        axes = vs.get("axes") or ({"in": vs["input_axes"], "out": vs["output_axes"]} if "input_axes" in vs else None)
        extra = f", axes={axes}" if axes else ""
        return f"VS({_g(vs['scale'])}, {vs['mode']}, {vs['distribution']}{extra})"
    if entry.action == "constant":
        return f"constant {entry.value:g}"
    return {"keep": "keep", "unmatched": "- (unmatched)", "skip": "- (not float)"}[entry.action]


def _expression_lines(plan: Plan) -> Iterator[str]:
    """Each tensor's expressions with their values: ``name: init.normal.std = TEXT = VALUE``."""
    for entry in plan:
        for part in (entry, *entry.parts):
            for at, text, value in part.expressions:
                shown = "per element" if value is None else _g(value)
                yield f"  {part.name}: {at} = {text} = {shown}"


def _spread_text(entry: PlanEntry) -> str:
    if entry.limit is not None:
        return f"limit={entry.limit:.6g}"
    if entry.std is not None:
        return f"std={entry.std:.6g}"
    return "-"


PLAN_COLUMNS = ("name", "shape", "dtype", "role", "rule", "init", "fan_in", "fan_out", "std/limit", "fans from")


def role_text(role: str | None, guessed: bool) -> str:
    """A role as tables show it: ``bias``, ``running_stat (guess)`` for names read alone, ``-``."""
    if not role:
        return "-"
    return f"{role} (guess)" if guessed else role


def plan_rows(plan: Plan) -> list[tuple[str, ...]]:
    rows = []
    shared: dict[str, str] = {}  # one string per distinct cell: a model may have a million rows
    for entry in (row for whole in plan for row in (whole, *whole.parts)):
        cells = (
            "[" + ",".join(str(d) for d in entry.shape) + "]",
            entry.dtype,
            role_text(entry.role, entry.role_guessed),
            entry.rule or "-",
            _init_text(entry),
            "-" if entry.fan_in is None else str(entry.fan_in),
            "-" if entry.fan_out is None else str(entry.fan_out),
            _spread_text(entry),
            entry.fans_from or "-",
        )
        rows.append((entry.name, *(shared.setdefault(cell, cell) for cell in cells)))
    return rows


def table_lines(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Iterator[str]:
    """Columns padded to their widest cell, line by line; control characters in a cell are
    escaped, so that every row is one line."""
    rows = [row if "".join(row).isprintable() else [printable(cell) for cell in row] for row in rows]
    widths = [max(len(column), *map(len, cells)) for column, cells in zip(columns, zip(*rows))] if rows else list(map(len, columns))
    template = "  ".join(f"{{:<{width}}}" for width in widths)
    return (template.format(*row).rstrip() for row in [columns, *rows])


def _print_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    for line in table_lines(columns, rows):
        print(line)


def _print_plan(plan: Plan, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(plan.as_list(), indent=2))
        return
    for line in plan_lines(plan):
        print(line)


def plan_text(plan: Plan) -> str:
    """What ``vsconf plan`` prints for ``plan``: the table of every tensor (name, shape,
    dtype, role, rule, init, fans, std or limit, and what gave the fans), then the
    consumers, the expressions' values, what the safe defaults kept, the untied copies and
    the tied names -- for a plan from :func:`vsconf.plan` or a bridge's ``plan_module``,
    ``plan_params`` or ``plan_model``.  Names are printed with control characters escaped.

    Args:
        plan: A :class:`~vsconf.Plan`.

    Returns:
        The text, one line per row, ending in a newline.

    Raises:
        Nothing: every plan has a text.

    Example:
        >>> import numpy as np, vsconf
        >>> spec = vsconf.parse_spec("vsconf: 1\\nseed: 1\\nlayout: torch\\nrules:\\n  - match: '*.weight'\\n    init: he_normal\\n  - match: '*.bias'\\n    init: zeros\\n")
        >>> print(vsconf.plan_text(vsconf.plan({"fc.weight": np.zeros((3, 4), np.float32), "fc.bias": np.zeros(3, np.float32)}, spec)), end="")
        name       shape  dtype    role            rule               init                             fan_in  fan_out  std/limit     fans from
        fc.weight  [3,4]  float32  weight (guess)  rules[0] (line 5)  VS(2, fan_in, truncated_normal)  4       3        std=0.707107  torch
        fc.bias    [3]    float32  bias (guess)    rules[1] (line 7)  constant 0                       -       -        -             -
    """
    return "\n".join(plan_lines(plan)) + "\n"


def plan_lines(plan: Plan) -> Iterator[str]:
    yield from table_lines(PLAN_COLUMNS, plan_rows(plan))
    consumers = [(e.name, e.role_from or "-", ", ".join(e.consumers)) for e in plan if e.consumers]
    if consumers:
        yield ""
        yield from table_lines(("name", "role from", "consumers"), consumers)
    expressions = list(_expression_lines(plan))
    if expressions:
        yield ""
        yield "expressions:"
        yield from (printable(line) for line in expressions)
    kept = [(e.name, e.reason) for e in plan if e.reason]
    if kept:
        yield ""
        yield "kept by the safe defaults:"
        yield from (printable(f"  {name}: {reason}") for name, reason in kept)
    if plan.untied:
        yield ""
        yield _untied_text(plan)
    if plan.aliases:
        yield ""
        yield f"{len(plan.aliases)} tied name(s), each held once under the tensor it is:"
        yield from (printable(f"  {name} = {tensor}") for name, tensor in plan.aliases.items())


def _untied_text(plan: Plan) -> str:
    lines = [f"untied {len(plan.untied)} shared tensor(s), one copy per consumer:"]
    lines += [printable(f"  {name} -> {', '.join(copies)}") for name, copies in plan.untied.items()]
    return "\n".join(lines)


# --------------------------------------------------------------------------- progress


class _ProgressBar:
    """A one-line bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.drawn = False

    def __call__(self, done: int, total: int, name: str) -> None:
        if not self.enabled:
            return
        width = 30
        filled = width * done // max(total, 1)
        name = printable(name)
        label = name if len(name) <= 40 else "..." + name[-37:]
        sys.stderr.write(f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{total} {label:<40}")
        sys.stderr.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")


# --------------------------------------------------------------------------- commands


def _counts(plan: Plan) -> str:
    counts: dict[str, int] = {}
    for entry in plan:
        counts[entry.action] = counts.get(entry.action, 0) + 1
    words = {"fill": "filled", "constant": "set to constants", "keep": "kept", "unmatched": "unmatched", "skip": "not float"}
    return ", ".join(f"{counts[k]} {words[k]}" for k in words if counts.get(k))


def _given_vars(args: argparse.Namespace) -> dict[str, int | float] | None:
    """``--vars FILE`` then ``--var NAME=VALUE`` (the later wins), or None when neither."""
    if args.vars is None and not args.var:
        return None
    given = read_vars_file(args.vars) if args.vars is not None else {}
    given.update(dict(args.var or ()))
    return given


def _apply(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, vars=_given_vars(args))
    if args.dry_run:
        plan = api.plan(args.model, spec, seed=args.seed, materialize=args.materialize, untie=args.untie)
        _warn_problems(plan.warnings)
        _print_plan(plan, "table")
        return 0
    bar = _ProgressBar(not args.quiet)
    try:
        result = api.apply(
            args.model,
            spec,
            args.output,
            in_place=args.in_place,
            force=args.force,
            seed=args.seed,
            jobs=args.jobs,
            lock=args.lock,
            materialize=args.materialize,
            untie=args.untie,
            progress=bar,
            scheduler=args.scheduler,
            dask_workers=args.dask_workers,
            shard_size=args.shard_size,
            task_size=args.task_size,
        )
    finally:
        bar.finish()
    _warn_problems(result.plan.warnings)
    _warn([f"vsconf: warning: {note}" for note in result.notes])
    if not args.quiet:
        details = "".join(f"; {detail}" for detail in result.details)
        _say(
            f"wrote {result.output}: {_counts(result.plan)} "
            f"(seed {result.plan.seed}, spec sha256 {result.plan.spec_sha256[:16]}){details}"
        )
        if result.plan.untied:
            print(_untied_text(result.plan))
        if args.lock:
            _say(f"wrote {args.lock}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    plan = api.plan(
        args.model, args.spec, seed=args.seed, materialize=args.materialize, untie=args.untie, vars=_given_vars(args)
    )
    _warn_problems(plan.warnings)
    if args.stats:
        values = _values_stats(args.model)
        if args.format == "json":
            print(json.dumps([{**e.as_dict(), "stats": _stats_dict(values, e.name)} for e in plan], indent=2))
            return 0
        rows = [(*row, *_stats_cells(values, row[0])) for row in plan_rows(plan)]
        _print_table((*PLAN_COLUMNS, *STATS_COLUMNS), rows)
        return 0
    _print_plan(plan, args.format)
    return 0


# The columns `plan --stats` and `inspect --stats` add: what the tensor holds now.
STATS_COLUMNS = ("mean", "std", "min", "max", "zeros")


def _values_stats(model: Path) -> dict[str, Any]:
    from vsconf import tally

    return {row.name: row.stats for row in tally.stats(model)}


def _stats_cells(values: dict[str, Any], name: str) -> tuple[str, ...]:
    found = values.get(name)
    if found is None or found.mean is None:
        return ("-",) * len(STATS_COLUMNS)
    return (_num(found.mean), _num(found.std), _num(found.min), _num(found.max), _num(found.zeros))


def _stats_dict(values: dict[str, Any], name: str) -> dict[str, Any] | None:
    found = values.get(name)
    return None if found is None else found.as_dict()


def _verify(args: argparse.Namespace) -> int:
    problems = api.verify(
        args.model, args.spec, lock=args.lock, seed=args.seed, jobs=args.jobs, untie=args.untie, vars=_given_vars(args)
    )
    for problem in problems:
        _say(problem.format(), stderr=True)
    if problems:
        count = len(problems)
        _say(f"vsconf: error: {args.model}: {count} mismatch{'es' if count != 1 else ''}", stderr=True)
        return 1
    _say(f"{args.model}: every tensor matches the spec" + (" and the lock" if args.lock else ""))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    records = api.inspect(args.model, materialize=args.materialize)
    values = _values_stats(args.model) if args.stats else None
    if args.format == "json":
        if values is not None:
            records = [{**r, "stats": _stats_dict(values, r["name"])} for r in records]
        print(json.dumps(records, indent=2))
        return 0
    rows = [
        (
            r["name"],
            "[" + ",".join(map(str, r["shape"])) + "]",
            r["dtype"],
            role_text(r["role"], r["role_guessed"]),
            str(r["fan_in"]),
            str(r["fan_out"]),
            r["fans_from"] + (f" (conflict: {r['conflict']})" if r["conflict"] else ""),
            r["role_from"] or "-",
            ", ".join(r["consumers"]) or "-",
        )
        for r in records
    ]
    columns = ("name", "shape", "dtype", "role", "fan_in", "fan_out", "fans from", "role from", "consumers")
    if values is not None:
        columns = (*columns, *STATS_COLUMNS)
        rows = [(*row, *_stats_cells(values, row[0])) for row in rows]
    _print_table(columns, rows)
    return 0


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _stats(args: argparse.Namespace) -> int:
    from vsconf import tally

    rows = tally.stats(args.model, args.other)
    if args.format == "json":
        print(json.dumps([row.as_dict() for row in rows], indent=2))
        return 0
    shape = lambda row: "[" + ",".join(map(str, row.shape)) + "]"  # noqa: E731
    if args.other is None:
        columns = ("name", "shape", "dtype", "count", "mean", "std", "min", "max", "zeros", "non-finite")
        _print_table(columns, [
            (row.name, shape(row), row.dtype, str(row.stats.count), _num(row.stats.mean), _num(row.stats.std),
             _num(row.stats.min), _num(row.stats.max), _num(row.stats.zeros), str(row.stats.nonfinite))
            for row in rows if row.stats is not None
        ])
        return 0
    columns = ("name", "shape", "dtype", "std", "std (2nd)", "diff mean", "diff std", "max |diff|", "relative change", "note")
    table = []
    for row in rows:
        first, second, diff = row.stats, row.other, row.difference
        worst = None if diff is None or diff.min is None else max(abs(diff.min), abs(diff.max or 0.0))
        table.append((
            row.name, shape(row), row.dtype, _num(first.std if first else None), _num(second.std if second else None),
            _num(diff.mean if diff else None), _num(diff.std if diff else None), _num(worst), _num(row.relative_change),
            row.note or "-",
        ))
    _print_table(columns, table)
    return 0


def _audit(args: argparse.Namespace) -> int:
    from vsconf import auditing

    result = auditing.audit(
        args.model, args.spec, alpha=args.alpha, seed=args.seed, vars=_given_vars(args), untie=args.untie,
        report=args.report, force=args.force,
    )
    for warning in result.warnings:
        _say(f"vsconf: warning: {warning}", stderr=True)
    if result.report is not None:
        _say(f"wrote the report {result.report}", stderr=True)
    if args.format == "json":
        print(json.dumps(result.as_dict(), indent=2))
    else:
        rows = []
        for v in result.verdicts:
            verdict = "-" if v.ok is None else ("ok" if v.ok else "FAIL")
            why = v.reason + (f" ({'; '.join(v.alternatives)})" if v.alternatives else "")
            tested = "-" if not v.tested else f"{v.tested}{' (subsample)' if v.subsampled else ''}"
            rows.append((v.name, v.expected, v.test, tested, _num(v.p_value), verdict, why or "-"))
        _print_table(("name", "expected", "test", "n", "p", "verdict", "why"), rows)
        tested = sum(1 for v in result.verdicts if v.ok is not None)
        print(f"{tested} tensors checked, {len(result.failed)} inconsistent (KS tests held at family-wise alpha {result.alpha:g}, Holm)")
    if not result.ok:
        count = len(result.failed)
        _say(f"vsconf: error: {args.model}: {count} tensor{'s' if count != 1 else ''} not initialised as the spec says", stderr=True)
        return 1
    return 0


def _validate(args: argparse.Namespace) -> int:
    failed = 0
    given = _given_vars(args)
    for path in args.specs:
        try:
            spec = load_spec(path, vars=given)
        except SpecError as exc:
            failed += 1
            for problem in exc.problems:
                _say(problem.format(), stderr=True)
            count = len(exc.problems)
            _say(f"vsconf: error: {path}: {count} problem{'s' if count != 1 else ''}", stderr=True)
            continue
        _warn_problems(spec.warnings)
        _say(f"{path}: valid ({len(spec.rules)} rules, spec sha256 {spec.sha256[:16]})")
    return 1 if failed else 0


def print_spec_error(exc: SpecError) -> None:
    """One problem: one ``vsconf: error:`` line.  More: each on its line, then a count."""
    if len(exc.problems) == 1:
        _say(f"vsconf: error: {exc.problems[0].format()}", stderr=True)
        return
    for problem in exc.problems:
        _say(problem.format(), stderr=True)
    _say(f"vsconf: error: {exc.problems[0].source}: {len(exc.problems)} problems", stderr=True)


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return 0


# --------------------------------------------------------------------------- parser


# --untie alone unties every shared float tensor; --untie conflicts only those whose
# consumers disagree (as `untie: conflicts` in the spec).
_UNTIE = {"nargs": "?", "const": "all", "default": False, "choices": ("all", "conflicts"), "metavar": "all|conflicts"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsconf",
        description="Declarative, reproducible VarianceScaling initialization of ONNX models and state dicts.",
    )
    parser.add_argument("--version", action="version", version=f"vsconf {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_and_spec(command: argparse.ArgumentParser) -> None:
        command.add_argument("model", metavar="MODEL", type=Path, help=".onnx, .npz or .safetensors")
        command.add_argument("spec", metavar="SPEC", type=Path)

    def given_vars(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--var", action="append", type=arguments.cli_var, metavar="NAME=VALUE",
            help="set a var the spec's expressions read (repeatable; over --vars and the spec's vars:)",
        )
        command.add_argument(
            "--vars", type=Path, metavar="FILE",
            help="a JSON or YAML mapping whose numeric entries become vars (a Hugging Face config.json as it is)",
        )

    apply = commands.add_parser("apply", help="initialize a model's weights from a spec")
    model_and_spec(apply)
    where = apply.add_mutually_exclusive_group()
    where.add_argument(
        "-o", "--output", help="output file, or folder for a sharded checkpoint (default: <stem>.init<suffix> beside MODEL)"
    )
    where.add_argument("--in-place", action="store_true", help="replace MODEL (atomically)")
    apply.add_argument("--force", action="store_true", help="overwrite an existing output")
    apply.add_argument("--seed", type=arguments.cli_seed, help="use this seed instead of the spec's")
    apply.add_argument("--jobs", type=arguments.cli_jobs, help="threads generating values (the values do not depend on it)")
    apply.add_argument("--lock", type=Path, help="write a lock file: per tensor config, fans, std/limit, SHA-256")
    apply.add_argument("--materialize", action="store_true", help="ONNX: turn ConstantOfShape weights into initializers")
    apply.add_argument(
        "--untie", **_UNTIE, help="ONNX: give each consumer of a shared tensor its own copy (conflicts: only where they disagree)"
    )
    apply.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    apply.add_argument("--quiet", action="store_true", help="no progress bar and no summary (warnings still print)")
    given_vars(apply)
    seeding = apply.add_argument_group("writing by tasks (ONNX, .safetensors and sharded checkpoints; --shard-size: folder outputs)")
    seeding.add_argument("--shard-size", type=arguments.cli_size, metavar="SIZE", help="largest shard, e.g. 5GB (the default), 500MB, 2GiB or bytes")
    seeding.add_argument(
        "--scheduler", default="auto", type=arguments.cli_scheduler,
        help="where the tasks that write the output run: auto (default: processes for 1 GiB of new values or more "
        "and --jobs 2 or more, threads below), threads, processes, or a Dask scheduler's address tcp://HOST:PORT",
    )
    seeding.add_argument("--dask-workers", type=arguments.cli_jobs, metavar="N", help="start a local Dask cluster of N workers")
    seeding.add_argument("--task-size", type=arguments.cli_size, metavar="SIZE", help="bytes one task writes at most (default 64MiB)")
    apply.set_defaults(run=_apply)

    plan = commands.add_parser("plan", help="which rule fills which tensor, with fans and std/limit")
    model_and_spec(plan)
    plan.add_argument("--format", choices=("table", "json"), default="table")
    plan.add_argument("--seed", type=arguments.cli_seed, help="use this seed instead of the spec's")
    plan.add_argument("--materialize", action="store_true", help="ONNX: include ConstantOfShape weights")
    plan.add_argument(
        "--untie", **_UNTIE, help="ONNX: plan each consumer of a shared tensor apart (conflicts: only where they disagree)"
    )
    plan.add_argument("--stats", action="store_true", help="add what each tensor holds now: mean, std, min, max, zeros")
    given_vars(plan)
    plan.set_defaults(run=_plan)

    verify = commands.add_parser("verify", help="check that a model's weights are what the spec produces")
    model_and_spec(verify)
    verify.add_argument("--lock", type=Path, help="also compare with this lock file (its seed is used)")
    verify.add_argument("--seed", type=arguments.cli_seed, help="the seed the model was made with, if not the spec's")
    verify.add_argument("--jobs", type=arguments.cli_jobs)
    verify.add_argument("--untie", **_UNTIE, help="ONNX: the model was made with --untie")
    given_vars(verify)
    verify.set_defaults(run=_verify)

    inspect = commands.add_parser("inspect", help="list tensors with shapes, dtypes, consumers and inferred fans")
    inspect.add_argument("model", metavar="MODEL", type=Path)
    inspect.add_argument("--format", choices=("table", "json"), default="table")
    inspect.add_argument("--materialize", action="store_true", help="ONNX: include ConstantOfShape weights")
    inspect.add_argument("--stats", action="store_true", help="add what each tensor holds: mean, std, min, max, zeros")
    inspect.set_defaults(run=_inspect)

    stats = commands.add_parser("stats", help="per tensor count, mean, std, min, max, zeros; with MODEL2, their difference")
    stats.add_argument("model", metavar="MODEL", type=Path)
    stats.add_argument("other", metavar="MODEL2", type=Path, nargs="?", help="a second model: the difference MODEL2 - MODEL")
    stats.add_argument("--json", dest="format", action="store_const", const="json", default="table", help="print JSON")
    stats.set_defaults(run=_stats)

    audit = commands.add_parser("audit", help="test every tensor against the distribution the spec assigns it")
    model_and_spec(audit)
    audit.add_argument("--alpha", type=arguments.cli_alpha, default=0.01, help="family-wise level of the KS tests (Holm; default 0.01)")
    audit.add_argument("--seed", type=arguments.cli_seed, help="use this seed instead of the spec's")
    audit.add_argument("--untie", **_UNTIE, help="ONNX: the model was made with --untie")
    audit.add_argument("--json", dest="format", action="store_const", const="json", default="table", help="print JSON")
    audit.add_argument("--report", type=Path, metavar="DIR", help="write an HTML page with a histogram per tensor (needs matplotlib)")
    audit.add_argument("--force", action="store_true", help="replace an existing report folder")
    given_vars(audit)
    audit.set_defaults(run=_audit)

    validate = commands.add_parser("validate", help="check spec files: schema and meaning, all errors at once")
    validate.add_argument("specs", nargs="+", metavar="SPEC")
    given_vars(validate)
    validate.set_defaults(run=_validate)

    schema = commands.add_parser("schema", help="print the JSON Schema of the spec format")
    schema.set_defaults(run=_schema)
    return parser
