"""The README's configuration reference is checked against driftd/config/.

The TOML keys are the parser's own (``driftd.config.toml_keys``: the fields of the settings
dataclasses that are not derived, the same sets that reject unknown keys). A key missing from the
README, a documented key that no longer exists, or a documented default that differs from the
dataclass default fails a test.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import tomli

from driftd import config as cfgmod
from driftd.config import parse as cfgparse

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# README heading for each TOML table -> the dataclass it is read into (driftd.config.TABLES).
SECTIONS: dict[str, type] = {heading: cls for cls, heading in cfgmod.TABLES.items()}

# Dataclass fields that are not TOML keys of the same name, and where they come from (field metadata).
DERIVED = {(cls, f.name): f.metadata["derived"] for cls in cfgmod.TABLES for f in dataclasses.fields(cls)
           if "derived" in f.metadata}


def toml_keys() -> dict[str, set[str]]:
    """README heading -> allowed keys, as the parser derives them from the dataclasses (the same sets
    that reject unknown keys)."""
    return {heading: set(cfgmod.toml_keys(cls)) for cls, heading in cfgmod.TABLES.items()}


def test_derived_fields_are_the_known_ones() -> None:
    """A field marked derived is not a key: each is one the parser sets from something else."""
    assert {(c.__name__, n) for c, n in DERIVED} == {
        ("Config", "path"), ("ImagePolicySettings", "policy"), ("ImagePolicySettings", "range")}


def test_every_table_is_read() -> None:
    """Each dataclass in TABLES is read by the parser: its keys reject an unknown key."""
    tree = ast.parse(inspect.getsource(cfgparse))
    used = {n.args[0].id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            and n.func.id == "toml_keys" and n.args and isinstance(n.args[0], ast.Name)}
    assert used == {cls.__name__ for cls in cfgmod.TABLES}


def readme_reference(path: Path = README) -> dict[str, dict[str, dict[str, str]]]:
    """README heading -> key -> {type, default, meaning}, from the tables under each '### `...`' heading
    of the '## Configuration reference' section."""
    text = path.read_text()
    m = re.search(r"^## Configuration reference\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, "README.md has no '## Configuration reference' section"
    out: dict[str, dict[str, dict[str, str]]] = {}
    heading = None
    for line in m.group(1).splitlines():
        h = re.match(r"^### `(.+?)`", line)
        if h:
            heading = h.group(1)
            out.setdefault(heading, {})
            continue
        row = re.match(r"^\|\s*`([a-z_]+)`\s*\|(.*)\|\s*$", line)
        if row and heading is not None:
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row.group(2))]
            assert len(cells) == 3, f"README row for {heading} {row.group(1)}: expected Key | Type | Default | Meaning"
            assert row.group(1) not in out[heading], f"{heading} {row.group(1)} documented twice"
            out[heading][row.group(1)] = {"type": cells[0], "default": cells[1], "meaning": cells[2]}
    return out


@pytest.fixture(scope="module")
def documented() -> dict[str, dict[str, dict[str, str]]]:
    return readme_reference()


def undocumented(documented: dict[str, dict[str, dict[str, str]]]) -> list[str]:
    return [f"{heading} {key}" for heading, keys in toml_keys().items()
            for key in sorted(keys - set(documented.get(heading, {})))]


def test_every_toml_key_is_documented(documented: dict[str, dict[str, dict[str, str]]]) -> None:
    missing = undocumented(documented)
    assert not missing, "undocumented config keys (add them to README.md's configuration reference): " + \
        ", ".join(missing)


def test_no_documented_key_is_stale(documented: dict[str, dict[str, dict[str, str]]]) -> None:
    keys = toml_keys()
    stale = [f"{h} {k}" for h, rows in documented.items() for k in rows if k not in keys.get(h, set())]
    assert not stale, f"README documents keys config.py does not accept: {', '.join(stale)}"


def test_every_dataclass_field_is_a_documented_key_or_derived(documented: dict[str, dict[str, dict[str, str]]]) -> None:
    problems = []
    for heading, cls in SECTIONS.items():
        assert cls is not None
        for f in dataclasses.fields(cls):
            if (cls, f.name) in DERIVED:
                continue
            if f.name not in documented.get(heading, {}):
                problems.append(f"{cls.__name__}.{f.name} (expected under {heading})")
    assert not problems, "settings fields without documentation: " + ", ".join(problems)


def test_every_row_has_a_type_and_a_meaning(documented: dict[str, dict[str, dict[str, str]]]) -> None:
    for heading, rows in documented.items():
        for key, row in rows.items():
            assert row["type"], f"{heading} {key}: no type"
            assert len(row["meaning"]) >= 10, f"{heading} {key}: explain what it means"


def _expected_default(cls: type, name: str) -> Any:
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _documented_default(cell: str, expected: Any) -> Any:
    """A default cell holds a TOML literal in backticks, or 'required', or 'none'."""
    if cell.lower().startswith("required"):
        return dataclasses.MISSING
    if cell.lower().startswith("none"):
        return None
    m = re.match(r"`(.+?)`", cell)
    assert m, f"default {cell!r}: write a TOML literal in backticks, 'required' or 'none'"
    value = tomli.loads(f"v = {m.group(1)}")["v"]
    if isinstance(expected, float) and isinstance(value, str):
        return cfgmod.parse_duration(value)
    if isinstance(expected, Path):
        return Path(value)
    if isinstance(expected, tuple):
        return tuple(value)
    if isinstance(expected, Enum):
        return type(expected)(value)
    if isinstance(expected, float) and isinstance(value, int):
        return float(value)
    return value


def test_documented_defaults_match_the_code(documented: dict[str, dict[str, dict[str, str]]]) -> None:
    wrong = []
    for heading, cls in SECTIONS.items():
        if cls is cfgmod.Config:
            continue
        assert cls is not None
        names = {f.name for f in dataclasses.fields(cls)}
        for key, row in documented.get(heading, {}).items():
            if key not in names:
                continue  # e.g. images' semver/alphabetical/numerical: no field of that name
            expected = _expected_default(cls, key)
            if dataclasses.is_dataclass(expected):
                continue  # a nested table ([environments.brakes]): documented in its own section
            got = _documented_default(row["default"], expected)
            if expected in ((), {}) and got is None:
                continue  # "none" for an empty list/table reads fine
            if got != expected:
                wrong.append(f"{heading} {key}: README says {row['default']!r}, code has {expected!r}")
    assert not wrong, "\n".join(wrong)


def test_reference_parser_catches_an_undocumented_key(tmp_path: Path) -> None:
    """The check above can fail: drop one row and the missing key is named."""
    text = README.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `git_concurrency`"))
    fake = tmp_path / "README.md"
    fake.write_text(text.replace(row + "\n", ""))
    assert undocumented(readme_reference(fake)) == ["[daemon] git_concurrency"]


def test_example_config_is_valid_and_documented_keys_only() -> None:
    """config/example.toml (referenced from the README) loads; its keys are all in the reference."""
    data = tomli.loads((ROOT / "config" / "example.toml").read_text())
    ref = readme_reference()

    def walk(heading: str, table: dict[str, Any]) -> None:
        for k, v in table.items():
            sub = {"clusters": "[[clusters]]", "aws_accounts": "[[aws_accounts]]", "repositories": "[[repositories]]",
                   "registries": "[[registries]]", "environments": "[[environments]]", "daemon": "[daemon]",
                   "alertmanager": "[alertmanager]"} if heading == "top level" else {
                "kubernetes": "[environments.kubernetes]", "aws": "[environments.aws]",
                "ignore": "[[environments.ignore]]", "enforce_windows": "[[environments.enforce_windows]]",
                "brakes": "[environments.brakes]", "images": "[[environments.images]]",
                "write_back": "[environments.write_back]"} if heading == "[[environments]]" else {}
            if k in sub:
                for t in (v if isinstance(v, list) else [v]):
                    walk(sub[k], t)
            else:
                assert k in ref.get(heading, {}), f"config/example.toml uses {heading} {k}, undocumented"

    walk("top level", data)


def test_reference_parser_catches_a_wrong_default(tmp_path: Path) -> None:
    text = README.read_text()
    fake = tmp_path / "README.md"
    fake.write_text(text.replace('| `fight_window` | duration | `"10m"` |', '| `fight_window` | duration | `"11m"` |'))
    with pytest.raises(AssertionError, match=r"fight_window: README says"):
        test_documented_defaults_match_the_code(readme_reference(fake))


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md", "docs/operations.md"])
def test_relative_links_resolve(doc: str) -> None:
    """Every relative link in the docs points at a file or directory of the repository."""
    path = ROOT / doc
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text())
    local = [ln for ln in links if not re.match(r"^[a-z]+:", ln)]
    assert local, f"{doc} links nothing"
    broken = [ln for ln in local if not (path.parent / ln).exists()]
    assert not broken, f"{doc}: broken links {broken}"


def test_architecture_doc_names_every_layer_of_the_import_contract() -> None:
    """docs/architecture.md describes the layers lint-imports enforces: each one is named there."""
    pyproject = tomli.loads((ROOT / "pyproject.toml").read_text())
    contracts = pyproject["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers" and "containers" not in c]
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [m.strip() for layer in layers for m in layer.split("|") if m.strip() not in text]
    assert not missing, f"docs/architecture.md does not mention layer modules {missing}"


def test_every_alert_name_and_audit_event_kind_is_documented() -> None:
    """Alert names and event kinds are what operators route and filter on: the docs list every one."""
    from driftd.alerting.alerts import AlertName
    from driftd.policy.images import FindingKind
    from driftd.state import EventKind

    readme = README.read_text()
    ops = (ROOT / "docs" / "operations.md").read_text()
    m = re.search(r"^## Alerts\n(.*?)(?=^## )", readme, re.M | re.S)
    assert m, "README.md has no '## Alerts' section"
    table = {r.group(1) for r in re.finditer(r"^\| `(\w+)` \|", m.group(1), re.M)}
    assert table == {str(n) for n in AlertName}
    assert [str(n) for n in AlertName if f"`{n}`" not in ops] == []
    assert [str(k) for k in EventKind if f"`{k}`" not in readme] == []
    recorded = {FindingKind.UPDATE_AVAILABLE, FindingKind.TAG_MOVED, FindingKind.DIGEST_MISSING,
                FindingKind.WRITTEN_BACK, FindingKind.WOULD_WRITE_BACK, FindingKind.WRITE_BACK_FAILED}
    assert [str(k) for k in recorded if f"`{k}`" not in readme] == []
