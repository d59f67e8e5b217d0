"""The docs in ``docs/`` say what the code does: every spec they show validates, every key of
the schema is documented, and the README links them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import vsconf
from vsconf.initializers import PRESETS
from vsconf.inits import FORMULA, KINDS

ROOT = Path(__file__).resolve().parent.parent
SPEC_DOC = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
DESIGN_DOC = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
SCHEMA = json.loads((ROOT / "vsconf" / "vsconf.schema.json").read_text(encoding="utf-8"))


def _yaml_specs(text: str) -> list[str]:
    return [block for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S) if "vsconf: 1" in block]


@pytest.mark.parametrize("index", range(len(_yaml_specs(SPEC_DOC))))
def test_every_spec_in_the_reference_validates(index):
    vsconf.parse_spec(_yaml_specs(SPEC_DOC)[index], source=f"docs/spec.md block {index}")


def _keys(schema: object) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        found |= set(schema.get("properties", {}))
        for value in schema.values():
            found |= _keys(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= _keys(value)
    return found


@pytest.mark.parametrize("key", sorted(_keys(SCHEMA)))
def test_every_key_of_the_schema_is_documented(key):
    assert f"`{key}" in SPEC_DOC


@pytest.mark.parametrize("name", [*PRESETS, *SCHEMA["$defs"]["roleName"]["enum"]])
def test_every_preset_and_role_is_documented(name):
    assert f"`{name}`" in SPEC_DOC


def test_the_design_names_every_module_of_the_package():
    package = ROOT / "vsconf"
    modules = {
        str(p.relative_to(package).with_suffix(""))
        for p in package.rglob("*.py")
        if p.stem != "__main__" and not (p.stem == "__init__" and p.parent == package)
    }
    modules = {m[: -len("/__init__")] if m.endswith("/__init__") else m for m in modules}
    missing = sorted(m for m in modules if f"`{m}`" not in DESIGN_DOC and f"`{m}.py`" not in DESIGN_DOC)
    assert not missing, f"docs/design.md does not place {missing}"


def test_the_readme_links_the_docs_and_nothing_outside_the_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/spec.md" in readme and "docs/design.md" in readme
    assert "../shared" not in readme


def test_ci_floors_are_the_floors_pyproject_declares():
    declared = dict(re.findall(r'"([A-Za-z_]+)(?:\[[a-z]+\])?>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text()))
    pinned = dict(re.findall(r"^([A-Za-z_]+)==([0-9.]+)$", (ROOT / ".ci" / "floors.txt").read_text(), re.M))

    def release(version: str) -> tuple[int, ...]:  # 1.26 == 1.26.0
        parts = [int(p) for p in version.split(".")]
        while parts and parts[-1] == 0:
            parts.pop()
        return tuple(parts)

    assert pinned and {name: release(v) for name, v in pinned.items()} == {name: release(declared[name]) for name in pinned}
    runtime = re.search(r"dependencies = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.S).group(1)
    assert set(re.findall(r'"([A-Za-z_]+)>=', runtime)) <= set(pinned), "every run-time dependency has its floor pinned"


@pytest.mark.parametrize("kind", [*KINDS, FORMULA], ids=lambda kind: kind.key)
def test_every_init_kind_is_in_the_schema_and_the_docs_as_the_table_says(kind):
    """vsconf.inits.KINDS is the one table of init kinds: the schema's definition of each
    kind takes exactly its parameters, the init chain reaches it, and docs/spec.md shows it."""
    first, *rest = kind.key.split("_")
    definition = SCHEMA["$defs"][first + "".join(word.title() for word in rest) + "Init"]
    assert definition["required"] == [kind.key]
    if kind is FORMULA:
        assert definition["properties"]["formula"]["type"] == "string"
    else:
        assert set(definition["properties"][kind.key]["properties"]) == set(kind.params)
        assert ("seed" in definition["properties"]) == kind.seeded
    assert f'{{"required": ["{kind.key}"]}}' in json.dumps(SCHEMA["$defs"]["init"])
    assert f"{{{kind.key}: " in SPEC_DOC and f"`{kind.key}`" in SPEC_DOC
