"""The ``vsconf`` command: a thin layer of argument parsing over the Python API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vsconf import __version__
from vsconf.errors import SpecError, VsconfError
from vsconf.spec import load_spec, schema_text


def _validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.specs:
        try:
            spec = load_spec(path)
        except SpecError as exc:
            failed += 1
            for problem in exc.problems:
                print(problem.format(), file=sys.stderr)
            count = len(exc.problems)
            print(f"vsconf: error: {path}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
            continue
        for warning in spec.warnings:
            print(warning.format("warning"), file=sys.stderr)
        print(f"{path}: valid ({len(spec.rules)} rules, spec sha256 {spec.sha256[:16]})")
    return 1 if failed else 0


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsconf",
        description="Declarative, reproducible VarianceScaling initialization of ONNX models and state dicts.",
    )
    parser.add_argument("--version", action="version", version=f"vsconf {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check spec files: schema and meaning, all errors at once")
    validate.add_argument("specs", nargs="+", metavar="SPEC")
    validate.set_defaults(run=_validate)

    schema = commands.add_parser("schema", help="print the JSON Schema of the spec format")
    schema.set_defaults(run=_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except VsconfError as exc:
        print(f"vsconf: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vsconf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
