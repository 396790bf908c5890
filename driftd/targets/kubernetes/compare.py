"""Server-side-apply dry runs and the verdict cache.

The API server predicts the object Git would produce (defaults, CRD schema defaults,
mutating webhooks included) for ``PATCH ... application/apply-patch+yaml, fieldManager=driftd,
force=true, dryRun=All``; diff.explain compares that prediction with the live object.

A verdict depends only on the object driftd would apply and on the live object, so it is
cached by (digest of the applied body, live uid, live resourceVersion): steady state costs
no dry run at all, and one event re-evaluates one object.

Cold (a fresh process, a ``driftd check``) most objects are in sync and were last applied by
driftd: diff.noop proves from the live object alone (driftd's managedFields entry as the
schema) that the apply would change nothing, and no dry run is sent. Anything it cannot prove
(a changed value, a quantity the server would normalize, a field Git dropped, a human's
addition) goes to the server.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from ...diff import ignore, pointer
from ...diff.explain import Verdict, explain
from ...diff.managed_fields import DRIFTD_MANAGER, entries, resolve
from ...diff.noop import prove, schema_pointer, server_rewrites
from ...model import DesiredObject, ResourceKey
from . import ownership
from .client import APPLY_PATCH, ApiError, KubeClient
from .discovery import ResourceInfo

FIELD_MANAGER = DRIFTD_MANAGER


@dataclass
class Planned:
    """One desired object, resolved against the cluster: its resource, scope and applied body."""

    desired: DesiredObject
    key: ResourceKey
    info: ResourceInfo
    body: dict[str, Any]  # Git's object without ignored fields: what driftd applies
    ignored: tuple[str, ...]
    disabled: bool = False  # driftd.io/mode: disabled in Git: neither compared nor reverted
    # Its kind is defined by a CRD of the same desired state that the API server does not serve yet:
    # ``info`` is read from that CRD, the object cannot exist (missing), and it is applied only after
    # the CRD is Established and discovery knows the kind (apply.py).
    awaits_crd: bool = False
    digest: str = field(default="")

    def __post_init__(self) -> None:
        if not self.digest:
            self.digest = digest(self.body, self.ignored)


def digest(body: Mapping[str, Any], ignored: tuple[str, ...] = ()) -> str:
    raw = json.dumps([body, ignored], sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(raw).hexdigest()


def apply_body(p: Planned, live: Mapping[str, Any] | None) -> dict[str, Any]:
    """What driftd sends. Ignored fields driftd already owns keep their live value, so dropping
    them from Git's object never makes the apply delete them (releasing ownership would)."""
    if not p.ignored or live is None:
        return p.body
    owned: set[str] = set()
    for e in entries(live):
        if e.manager == FIELD_MANAGER and e.operation == "Apply":
            owned.update(ptr for ptr in (resolve(live, f) for f in e.fields) if ptr is not None)
    body = None
    for pat in p.ignored:
        for ptr in pointer.expand(live, pat):
            if ptr in owned and not any(t.isdigit() for t in pointer.split(ptr)):
                body = body or copy.deepcopy(p.body)
                pointer.set_value(body, ptr, copy.deepcopy(pointer.get(live, ptr)))
    return body or p.body


class DryRunRefused(ApiError):
    """The server would not accept Git's object (invalid, denied by a webhook, unknown field)."""


class Comparer:
    def __init__(self, client: KubeClient, human_managers: tuple[str, ...], *, fast_path: bool = True) -> None:
        self._client = client
        self._human = human_managers
        self._verdicts: dict[tuple[str, str, str], Verdict] = {}
        self._defaults: dict[str, dict[str, Any] | None] = {}
        self.fast_path = fast_path
        self.dry_runs = 0
        self.proven_noops = 0  # verdicts reached without a dry run (diff.noop)
        # What the server stores for a declared quantity, learned from dry runs:
        # (apiVersion, kind, schema pointer, json of the declared value) -> stored value.
        self._stored: dict[tuple[str, str, str, str], Any] = {}
        # (apiVersion, kind) -> set when the dry run that may teach those values has returned.
        self._learning: dict[tuple[str, str], anyio.Event] = {}

    def cached(self, p: Planned, live: Mapping[str, Any]) -> Verdict | None:
        return self._verdicts.get(_vkey(p, live))

    async def verdict(self, p: Planned, live: Mapping[str, Any]) -> Verdict:
        k = _vkey(p, live)
        v = self._verdicts.get(k)
        if v is not None:
            return v
        body = apply_body(p, live)
        if self.fast_path:
            # An object without the ownership mark (applied before marks existed, adopted in sync) is in
            # sync when everything else is: prove that without the mark, so it keeps the fast path.
            proof_body = body if ownership.owner(live) is not None else ownership.unmark(body)
            proof = prove(proof_body, live, self._human, canonical=self._canonical(p))
            if proof.pending:
                # Only quantities stand in the way (200 copies of a Deployment declaring cpu 2000m):
                # one dry run of the kind teaches what the server stores, the others wait for it.
                learning = self._learning.get((p.info.api_version, p.key.kind))
                if learning is not None:
                    await learning.wait()
                    proof = prove(proof_body, live, self._human, canonical=self._canonical(p))
            if proof.noop:
                self.proven_noops += 1
                v = Verdict(())
                self._remember(k, v)
                return v
            if proof.pending:
                predicted = await self._dry_run_teaching(p, body)
            else:
                predicted = await self._dry_run(p, body)
        else:
            predicted = await self._dry_run(p, body)
        v = explain(kind=p.key.kind, predicted=predicted, live=live, ignored=p.ignored, human_managers=self._human,
                    sensitive=p.desired.sensitive)
        if v.unconfirmed:
            defaults = await self._defaults_for(p)
            if defaults is not None:
                v = explain(kind=p.key.kind, predicted=predicted, live=live, ignored=p.ignored,
                            human_managers=self._human, defaults=defaults, sensitive=p.desired.sensitive)
        self._remember(k, v)
        return v

    def _remember(self, k: tuple[str, str, str], v: Verdict) -> None:
        if len(self._verdicts) > 200_000:
            self._verdicts.clear()
        self._verdicts[k] = v

    def _canonical(self, p: Planned) -> Callable[[str, Any], Any]:
        av, kind = p.info.api_version, p.key.kind

        def stored(ptr: str, value: Any) -> Any:
            return self._stored.get((av, kind, schema_pointer(ptr), json.dumps(value, sort_keys=True)))
        return stored

    async def _dry_run_teaching(self, p: Planned, body: dict[str, Any]) -> dict[str, Any]:
        kk = (p.info.api_version, p.key.kind)
        if kk in self._learning:
            return await self._dry_run(p, body)
        done = self._learning[kk] = anyio.Event()
        try:
            return await self._dry_run(p, body)
        finally:
            del self._learning[kk]
            done.set()

    async def _dry_run(self, p: Planned, body: dict[str, Any]) -> dict[str, Any]:
        self.dry_runs += 1
        try:
            predicted = await self._client.request(
                "PATCH", p.info.path(p.key.namespace, p.key.name), verb="apply", resource=p.info.label,
                query={"fieldManager": FIELD_MANAGER, "force": True, "dryRun": "All"},
                body=body, content_type=APPLY_PATCH, subject=str(p.key), sensitive=p.desired.sensitive)
        except ApiError as e:
            if e.status in (400, 403, 404, 409, 422, 500) or e.reason:
                raise DryRunRefused(e.status, e.reason, f"dry run refused: {e.message}", subject=str(p.key)) from e
            raise
        for ptr, declared, stored in server_rewrites(body, predicted):
            if len(self._stored) < 10_000:
                key = (p.info.api_version, p.key.kind, schema_pointer(ptr), json.dumps(declared, sort_keys=True))
                self._stored[key] = stored
        return predicted

    async def _defaults_for(self, p: Planned) -> dict[str, Any] | None:
        """Git's object as the server would create it (dry run, under a generated name), to tell
        a defaulted field some Update manager happens to own from a field a human added."""
        if p.digest in self._defaults:
            return self._defaults[p.digest]
        body = copy.deepcopy(p.body)
        meta = body.setdefault("metadata", {})
        meta.pop("name", None)
        meta["generateName"] = "driftd-defaults-"
        out: dict[str, Any] | None
        try:
            out = await self._client.request(
                "POST", p.info.path(p.key.namespace), verb="create", resource=p.info.label,
                query={"fieldManager": FIELD_MANAGER, "dryRun": "All"}, body=body, subject=str(p.key))
        except ApiError:
            out = None  # some kinds fix their name (APIService): additions stay unconfirmed, still reported
        self._defaults[p.digest] = out
        return out


def _vkey(p: Planned, live: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = live.get("metadata") or {}
    return (p.digest, str(meta.get("uid", "")), str(meta.get("resourceVersion", "")))


def planned_ignored(rules: Any, key: ResourceKey, body: Mapping[str, Any], hpa: bool) -> tuple[str, ...]:
    return ignore.ignored_paths(rules, kind=key.kind, name=key.name, namespace=key.namespace, body=body,
                                hpa_target=hpa)
