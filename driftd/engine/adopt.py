"""``driftd adopt --env E --object KIND/[NS/]NAME [--path POINTER ...]``: the live change is right and
Git is wrong. The drifted fields' live values are written into the manifest that declares the object
(edited on the text, keeping comments and formatting: ``policy.yamledit``), committed on top of the
environment branch's head and pushed to a NEW branch ``driftd/adopt/<env>/<kind>-<name>-<time>``,
never to the environment's branch itself; the branch name is printed for a pull request.

Never written: anything of a Secret-like kind or a secret-looking path (``driftd.redact`` decides, as
for every output), and values the target already masked. Objects rendered by kustomize are refused
(their manifest is not a file driftd can edit), so are objects Git does not declare.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import anyio

from ..config import Config, EnvironmentSettings
from ..diff import pointer as ptr
from ..errors import DriftdError
from ..model import REDACTED, ChangeOp, DesiredObject, Drift, TargetKind
from ..policy.yamledit import EditError, delete_value, set_value
from ..render.document import object_name
from ..secrets import SECRET_KINDS, secret_path
from ..sources.git_writeback import PushAuth, commit_and_push
from .desired import load_error
from .history import parse_object
from .pools import Sources, TargetPool, aws_context

EXIT_OK, EXIT_ERROR = 0, 2
_SOURCE = re.compile(r"^(?P<file>.+)#(?P<doc>\d+)(?P<items>(?:\.items\[\d+\])*)$")


@dataclass(frozen=True)
class Adoption:
    branch: str | None
    revision: str | None
    changes: tuple[str, ...]
    skipped: tuple[str, ...]


class AdoptError(DriftdError):
    """Adopt cannot proceed (nothing is pushed); the message says what to do."""


def _find_object(desired: Sequence[DesiredObject], kind: str, ns: str | None, name: str, default_ns: str
                 ) -> DesiredObject:
    cands = [o for o in desired if o.key.kind.lower() == kind.lower() and o.key.name == name
             and (o.key.namespace == (ns if ns is not None else o.key.namespace))]
    if ns is None and len(cands) > 1:
        cands = [o for o in cands if o.key.namespace in (default_ns, "")] or cands
    if not cands:
        raise AdoptError(f"{kind}/{(ns + '/') if ns else ''}{name} is not declared in Git for this environment: "
                         "adopt edits the manifest that declares an object", retryable=False)
    if len(cands) > 1:
        raise AdoptError(f"{kind}/{name} is declared in several namespaces; name it as KIND/NAMESPACE/NAME",
                         retryable=False)
    return cands[0]


_GONE = object()  # what is left of a value that was masked whole


def _unmasked(value: Any, path: str, left_out: list[str]) -> Any:
    """``value`` without what the target masked, at any depth: a masked map entry is dropped, and so
    is a list item holding one (an env entry named like a password goes whole, its name with it, as
    writing the name without its value would declare an empty one). ``left_out`` gets their pointers."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            sub = f"{path}/{ptr.escape(str(k))}"
            if v == REDACTED:
                left_out.append(sub)
            elif (kept := _unmasked(v, sub, left_out)) is not _GONE:
                out[k] = kept
        return out
    if isinstance(value, list):
        items = []
        for i, v in enumerate(value):
            mark: list[str] = []
            kept = _unmasked(v, f"{path}/{i}", mark)
            if mark or v == REDACTED:
                left_out.append(f"{path}/{i}")
            else:
                items.append(kept)
        return items
    return _GONE if value == REDACTED else value


def _select(drift: Drift, paths: Sequence[str]) -> tuple[list[tuple[str, ChangeOp, Any]], list[str]]:
    chosen, skipped = [], []
    for c in drift.changes:
        if paths and not any(ptr.is_prefix(p, c.path) for p in paths):
            continue
        if drift.key.kind in SECRET_KINDS or secret_path(drift.key.kind, c.path) or c.expected == REDACTED:
            skipped.append(f"{c.path}: secret, never written to Git")
            continue
        left_out: list[str] = []
        value = _unmasked(c.actual, c.path, left_out) if c.op is not ChangeOp.REMOVE else c.actual
        skipped.extend(f"{p}: masked (a secret-like value), never written to Git" for p in left_out)
        if value is _GONE or (left_out and value in ({}, [])):
            continue
        chosen.append((c.path, c.op, value))
    return chosen, skipped


def _branch_name(env: str, obj: DesiredObject, now: datetime) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{obj.key.kind}-{obj.key.name}").strip("-.").lower()[:60]
    return f"driftd/adopt/{re.sub(r'[^A-Za-z0-9._-]+', '-', env)}/{slug}-{now:%Y%m%d-%H%M%S}"


async def _adopt(config: Config, env: EnvironmentSettings, spec: str, paths: Sequence[str]) -> Adoption:
    kind, ns, name = parse_object(spec)
    if kind in SECRET_KINDS or kind.lower() in {k.lower() for k in SECRET_KINDS}:
        raise AdoptError(f"{kind} values are never written to Git: adopt the change by hand (sealed or external "
                         "secrets)", retryable=False)
    for p in paths:
        ptr.split(p)  # ValueError for a malformed pointer
    sources = Sources(config)
    pool = TargetPool(config)
    try:
        await sources.fetch(env.repository)
        loaded = await sources.load(env, **aws_context(config, env), cluster=pool.cluster_info(env))
        if loaded.state is None:
            raise AdoptError(f"the desired state does not load: {load_error(loaded)}")
        if env.kubernetes is None:
            raise AdoptError("adopt writes Kubernetes manifests; this environment has none", retryable=False)
        obj = _find_object(loaded.state.kubernetes, kind, ns, name, env.kubernetes.namespace)
        m = _SOURCE.match(obj.source)
        if m is None or m.group("file").endswith(("kustomization.yaml", "kustomization.yml", "Kustomization")):
            raise AdoptError(f"{object_name(obj.key)} comes from {obj.source}, not a plain manifest file: edit it "
                             "by hand", retryable=False)
        target = pool.get(TargetKind.KUBERNETES, env.kubernetes.cluster).target
        result = await target.check(env, loaded.state, inventory=frozenset())
        drift = next((d for d in result.drifts if d.key == obj.key), None)
        if drift is None:
            return Adoption(None, None, (), ())
        chosen, skipped = _select(drift, paths)
        if not chosen:
            return Adoption(None, None, (), tuple(skipped))
        file, doc = m.group("file"), int(m.group("doc"))
        prefix = "".join(f"/items/{i}" for i in re.findall(r"\[(\d+)\]", m.group("items")))
        problems: list[str] = []

        def edit(path: str, data: bytes) -> tuple[bytes, list[str]]:
            if path != file:
                return data, []
            text = data.decode("utf-8")
            lines = []
            for pointer, op, value in chosen:
                try:
                    text = delete_value(text, doc, pointer, prefix=prefix) if op is ChangeOp.REMOVE else \
                        set_value(text, doc, pointer, value, prefix=prefix)
                except EditError as e:
                    problems.append(f"{file}: {pointer}: {e}")
                    continue
                lines.append(f"{pointer}: {'removed' if op is ChangeOp.REMOVE else 'set to the live value'}")
            return text.encode("utf-8"), lines

        now = datetime.now(UTC)
        branch = _branch_name(env.name, obj, now)
        who = f" (changed live by {drift.changed_by})" if drift.changed_by else ""

        def message(lines: Sequence[str]) -> str:
            out = (f"driftd adopt: {object_name(obj.key)} in {env.name}{who}\n\n"
                   "The live values of these fields are adopted into Git:\n" + "\n".join(f"- {x}" for x in lines))
            if skipped:
                out += "\n\nLeft out (add them by hand where they belong):\n" + "\n".join(f"- {x}" for x in skipped)
            return out

        repo = config.repositories[env.repository]
        password = repo.token_file.read_text().strip() if repo.token_file is not None else None
        auth = PushAuth(username=repo.username or ("driftd" if password else None), password=password,
                        key_filename=str(repo.ssh_key_file) if repo.ssh_key_file else None)
        directory = file.rpartition("/")[0]
        res = await commit_and_push(repo.url, env.branch, cache_dir=config.daemon.state_dir / "writeback",
                                    paths=[directory], edit=edit, message=message, author=env.write_back.author,
                                    auth=auth, push_branch=branch, repository=repo)
        if problems:
            skipped.extend(problems)
        if res.revision is None:
            raise AdoptError("no edit could be made: " + "; ".join(problems or ["the manifest already has these "
                                                                                 "values"]), retryable=False)
        return Adoption(branch, res.revision, res.changes, tuple(skipped))
    finally:
        await pool.aclose()


def run_adopt(config: Config, *, env: str, obj: str, paths: Sequence[str], out: TextIO) -> int:
    try:
        a = anyio.run(_adopt, config, config.environment(env), obj, list(paths))
    except (DriftdError, ValueError) as e:
        print(f"driftd: adopt: {e}", file=sys.stderr)
        return EXIT_ERROR
    for s in a.skipped:
        print(f"driftd: adopt: skipped {s}", file=sys.stderr)
    if a.branch is None:
        print(f"driftd: adopt: {obj} has no drift to adopt in {env}", file=sys.stderr)
        return EXIT_OK
    for c in a.changes:
        out.write(f"  {c}\n")
    out.write(f"{a.branch}\n")
    return EXIT_OK
