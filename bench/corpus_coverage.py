"""Coverage of real CloudFormation templates: of the resources they declare, how many would driftd check?

Parses every template under the given directories (default: the shared corpus and tests/data/corpus) the way
an environment would (region us-east-1, a known account id, parameters from their Defaults) and asks the AWS
target, per declaration, whether it can be compared (``unchecked_reason``: a type with an adapter, every one of
which is exercised against moto, and an identity that resolves without a deployed stack). Prints:

- checked / declared over resources whose type driftd has an adapter for (the issue's goal: >= 90%),
- checked / declared over every resource, and the most common types without an adapter,
- the reasons resources of supported types are not checked.

    .venv/bin/python bench/corpus_coverage.py [DIR ...]
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from driftd.model import AwsDeclaration
from driftd.sources.declarations import TEMPLATE_SUFFIXES, Context, parse_template
from driftd.targets.aws import registry
from driftd.targets.aws.target import unchecked_reason

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIRS = [ROOT.parent / "shared" / "corpus" / "cloudformation", Path("/work/shared/corpus/cloudformation"),
                ROOT / "tests" / "data" / "corpus" / "cloudformation"]


def looks_like_template(data: bytes) -> bool:
    return b"Resources" in data and (b"AWS::" in data)


def identified_by(decl: AwsDeclaration) -> str:
    a = registry.get(decl.type)
    assert a is not None
    if isinstance(decl.metadata, dict) and decl.metadata.get("driftd.io/physical-id"):
        return "driftd.io/physical-id metadata"
    if getattr(getattr(a, "table", None), "identity", "name") == "tags":
        return "logical-id tags (CloudFormation's or driftd's)"
    if getattr(getattr(a, "table", None), "identity", "name") == "composite":
        return "declared composite name (role/policy ...)"
    if a.name_property and a.name_property in decl.properties:
        return "declared name"
    if decl.type == "AWS::EC2::SecurityGroup" or getattr(getattr(a, "table", None), "tags", None) is not None:
        return "logical id: CloudFormation's logical-id tag, or the name driftd sync gave it"
    return "logical id used as the name (no name declared: matches what driftd sync creates, not a name " \
           "CloudFormation generated)"


def main(dirs: list[Path]) -> None:
    files = errors = 0
    by_type: Counter[str] = Counter()
    checked_by_type: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    how: Counter[str] = Counter()  # how a checked resource is identified
    seen: set[Path] = set()
    for d in dirs:
        if not d.is_dir():
            continue
        for f in sorted(d.rglob("*")):
            if f.suffix not in TEMPLATE_SUFFIXES or not f.is_file() or f.resolve() in seen:
                continue
            seen.add(f.resolve())
            data = f.read_bytes()
            if not looks_like_template(data):
                continue
            r = parse_template(data, str(f), Context(region="us-east-1", account_id="123456789012",
                                                     stack_name="corpus"))
            if r.errors and not r.declarations:
                errors += 1
                continue
            files += 1
            for decl in r.declarations:
                by_type[decl.type] += 1
                why = unchecked_reason(decl)
                if why is None:
                    checked_by_type[decl.type] += 1
                    how[identified_by(decl)] += 1
                elif registry.get(decl.type) is not None:
                    reasons[f"{decl.type}: {why}"] += 1
    supported = {t for t in by_type if registry.get(t) is not None}
    declared_s = sum(by_type[t] for t in supported)
    checked = sum(checked_by_type.values())
    total = sum(by_type.values())
    print(f"templates: {files} parsed, {errors} not parsed; directories: {', '.join(str(d) for d in dirs)}")
    print(f"supported types (driftd adapter, served by moto): checked {checked} / declared {declared_s} = "
          f"{100 * checked / max(declared_s, 1):.1f}%")
    print(f"all types: checked {checked} / declared {total} = {100 * checked / max(total, 1):.1f}%")
    print("per supported type (checked / declared):")
    for t in sorted(supported, key=lambda t: -by_type[t]):
        print(f"    {t:45s} {checked_by_type[t]:4d} / {by_type[t]:4d}")
    print("checked resources, by how their live counterpart is found:")
    for k, n in how.most_common():
        print(f"    {n:4d}  {k}")
    print("not checked, supported types, by reason:")
    for why, n in reasons.most_common(15):
        print(f"    {n:4d}  {why}")
    print("most declared types without an adapter:")
    for t, n in Counter({t: n for t, n in by_type.items() if t not in supported}).most_common(15):
        print(f"    {n:4d}  {t}")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]] or DEFAULT_DIRS)
