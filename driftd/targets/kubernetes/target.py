"""KubernetesTarget: one cluster, compared with the environments that deploy to it.

check(): plan (discovery, namespaces, ignore rules, modes) -> live views (informer caches when
the daemon runs them, else one LIST per resource type and scope) -> verdicts (cached SSA dry
runs) -> drifts. revert(): apply.py and prune.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio

from ...config import ClusterSettings, EnvironmentSettings, KubernetesEnvSettings
from ...diff import ignore
from ...diff.explain import hpa_targets
from ...errors import DriftdError, PermissionDenied
from ...log import get_logger
from ...model import (
    Action,
    ClusterInfo,
    DesiredObject,
    DesiredState,
    Drift,
    DriftKind,
    ResourceKey,
    TargetKind,
    TargetResult,
)
from ...policy.modes import is_disabled
from . import apply as apply_mod
from . import ownership
from .client import KubeClient, connect
from .compare import Comparer, DryRunRefused, Planned
from .discovery import Discovery, ResourceInfo, UnknownKind, crd_kinds
from .informer import Informer, list_all
from .informers import SharedInformers
from .scope import UNMANAGED_KINDS, is_system_object

log = get_logger(__name__)

Scope = tuple[ResourceInfo, str | None]  # resource, namespace (None: all namespaces / cluster-scoped)
Ident = tuple[str, str, str, str]  # group, kind, namespace, name: an object whatever the version
# Above this many namespaces for one resource type, one cluster-wide LIST beats one per namespace.
MAX_NAMESPACED_LISTS = 3
# Seconds a revert waits, after a start, for the other environments on the cluster to be checked; and
# at most how long an orphan candidate waits for them to confirm they do not declare it.
PEER_WAIT = 10.0
_INFO_TTL = 600.0  # seconds a cluster's version and API versions are reused for Helm renderings


@dataclass
class LiveView:
    """The objects of one scope, or why they could not be read."""

    objects: Mapping[tuple[str, str], Any] | None
    error: str | None = None


def _disabled_in_git(body: Mapping[str, Any]) -> bool:
    """``disabled`` objects are not even compared. Every other mode is the engine's to decide
    (policy.modes.decide_mode); an invalid value is reported there, once, for every target."""
    return is_disabled(body)


class KubernetesTarget:
    kind = TargetKind.KUBERNETES

    def __init__(self, cluster: ClusterSettings, client: KubeClient | None = None, *, fast_path: bool = True,
                 peers: Callable[[], Iterable[str]] | None = None) -> None:
        self.cluster = cluster
        # Ownership (ownership.py): the configured environments on this cluster, and what each declared
        # at its last check. Without ``peers`` (a lone target in a test or tool) only the checked ones count.
        self._peers = peers
        self._claims: dict[str, frozenset[Ident]] = {}
        self._claimed_at: dict[str, float] = {}  # environment -> when it last said what it declares
        self._orphan_seen: dict[tuple[str, Ident], float] = {}  # (environment, object) -> first seen orphaned
        self._peer_waited: set[str] = set()  # environments whose reverts already waited once for unknown peers
        self._client = client
        self._fast_path = fast_path
        self._errors: dict[str, dict[ResourceKey, str]] = {}  # environment -> object -> its last error
        self._discovery: Discovery | None = None
        # One per human_managers setting: verdicts depend on it (environments may differ).
        self._comparers: dict[tuple[str, ...], Comparer] = {}
        self._informers = SharedInformers()
        # environment -> (the desired state, the settings, its plan): one plan per revision
        self._plans: dict[str, tuple[DesiredState, EnvironmentSettings,
                                     tuple[tuple[Planned, ...], tuple[str, ...], tuple[DesiredObject, ...]]]] = {}
        self.plans_made = 0  # plans computed (not reused) since start: tests and benchmarks read it
        self._info: tuple[float, ClusterInfo] | None = None

    # --- plumbing ----------------------------------------------------------------------------

    async def client(self) -> KubeClient:
        if self._client is None:
            self._client = await connect(self.cluster)
        return self._client

    async def discovery(self) -> Discovery:
        if self._discovery is None:
            self._discovery = Discovery(await self.client())
        return self._discovery

    async def comparer(self, humans: tuple[str, ...]) -> Comparer:
        c = self._comparers.get(humans)
        if c is None:
            c = self._comparers[humans] = Comparer(await self.client(), humans, fast_path=self._fast_path)
        return c

    @property
    def dry_runs(self) -> int:
        return sum(c.dry_runs for c in self._comparers.values())

    @property
    def proven_noops(self) -> int:
        """Objects found in sync without a dry run (see diff.noop)."""
        return sum(c.proven_noops for c in self._comparers.values())

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def cluster_info(self) -> ClusterInfo:
        """Version and API versions for renderers (Helm), asked again after ``_INFO_TTL`` seconds:
        a cluster upgrade or a new CRD changes what a chart renders."""
        now = time.monotonic()
        if self._info is None or now - self._info[0] > _INFO_TTL:
            self._info = (now, await (await self.discovery()).cluster_info())
        return self._info[1]

    @staticmethod
    def settings(env: EnvironmentSettings) -> KubernetesEnvSettings:
        if env.kubernetes is None:
            raise DriftdError("the environment declares no Kubernetes target", subject=env.name)
        return env.kubernetes

    # --- planning ------------------------------------------------------------------------------

    async def plan(self, env: EnvironmentSettings, desired: DesiredState
                   ) -> tuple[list[Planned], list[str], list[DesiredObject]]:
        """Resolve every desired object. Returns (planned, errors, objects of unknown kinds).

        Planned once per revision: check, revert and watch of the same desired state (the same object)
        and settings share one plan. Not kept while a kind is unknown or awaits its CRD: discovery
        may know it any moment."""
        cached = self._plans.get(env.name)
        if cached is not None and cached[0] is desired and cached[1] == env:
            return list(cached[2][0]), list(cached[2][1]), list(cached[2][2])
        self.plans_made += 1
        planned, errors, unknown = await self._plan(env, desired)
        if unknown or any(p.awaits_crd for p in planned):
            self._plans.pop(env.name, None)
        else:
            self._plans[env.name] = (desired, env, (tuple(planned), tuple(errors), tuple(unknown)))
        return planned, errors, unknown

    async def _plan(self, env: EnvironmentSettings, desired: DesiredState
                    ) -> tuple[list[Planned], list[str], list[DesiredObject]]:
        ks = self.settings(env)
        disc = await self.discovery()
        hpa = hpa_targets(_with_ns(d.body, d.key.namespace or ks.namespace) for d in desired.kubernetes)
        declared_kinds = crd_kinds(d.body for d in desired.kubernetes)
        out: list[Planned] = []
        errors: list[str] = []
        unknown: list[DesiredObject] = []
        for d in desired.kubernetes:
            body = dict(d.body)
            api_version = str(body.get("apiVersion") or d.key.api_version)
            kind = str(body.get("kind") or d.key.kind)
            awaits_crd = False
            try:
                info = await disc.resolve(api_version, kind)
            except UnknownKind as e:
                pending = declared_kinds.get((api_version, kind))
                if pending is None:
                    unknown.append(d)
                    errors.append(f"{d.key} ({d.source}): {e.message}")
                    continue
                info, awaits_crd = pending, True  # its CRD is declared too: created first, in the same sync
            except DriftdError as e:
                errors.append(f"{d.key} ({d.source}): {e}")
                continue
            meta = dict(body.get("metadata") or {})
            ns = (meta.get("namespace") or d.key.namespace or ks.namespace) if info.namespaced else ""
            if info.namespaced:
                meta["namespace"] = ns
            else:
                meta.pop("namespace", None)
            body["metadata"] = meta
            key = ResourceKey(TargetKind.KUBERNETES, kind, str(meta.get("name") or d.key.name), ns, api_version)
            bad = ignore.invalid_annotation_paths(body)
            if bad:
                errors.append(f"{key} ({d.source}): {ignore.IGNORE_ANNOTATION} entries must be JSON pointers "
                              f"starting with '/': {', '.join(bad)}")
            ignored = ignore.ignored_paths(env.ignore, kind=kind, name=key.name, namespace=ns, body=body,
                                           hpa_target=(kind, ns, key.name) in hpa)
            applied = ownership.mark(ignore.strip(body, ignored), env.name)
            out.append(Planned(desired=d, key=key, info=info, body=applied, ignored=ignored,
                               disabled=_disabled_in_git(body), awaits_crd=awaits_crd))
        return out, errors, unknown

    # --- live state ----------------------------------------------------------------------------

    async def _scopes(self, env: EnvironmentSettings, planned: Iterable[Planned], extra: Iterable[Scope]
                      ) -> set[Scope]:
        by_info: dict[ResourceInfo, set[str]] = {}
        for p in planned:
            if not p.awaits_crd:  # nothing to list: the API server does not serve the kind yet
                by_info.setdefault(p.info, set()).add(p.key.namespace)
        for info, ns in extra:
            by_info.setdefault(info, set()).add(ns or "")
        scopes: set[Scope] = set()
        for info, nss in by_info.items():
            if not info.namespaced or len(nss) > MAX_NAMESPACED_LISTS or "" in nss:
                scopes.add((info, None))
            else:
                scopes.update((info, ns) for ns in nss)
        return scopes

    async def _views(self, scopes: Iterable[Scope]) -> dict[Scope, LiveView]:
        client = await self.client()
        views: dict[Scope, LiveView] = {}

        async def one(scope: Scope) -> None:
            info, ns = scope
            inf = self._informers.get(info, ns) or (self._informers.get(info, None) if ns is not None else None)
            if inf is not None and inf.failing is not None:
                # Its cache may be incomplete: report the scope unknown (error), never drift from it.
                views[scope] = LiveView(None, f"watch of {info.label}{' in ' + ns if ns else ''} is failing: "
                                              f"{inf.failing}")
                return
            if inf is not None and inf.synced:
                objs = inf.objects if inf.namespace is None and ns is None else {
                    k: v for k, v in inf.objects.items() if ns is None or k[0] == ns}
                views[scope] = LiveView(objs)
                return
            try:
                views[scope] = LiveView((await list_all(client, info, ns))[0])
            except PermissionDenied as e:
                if ns is None and info.namespaced:
                    views[scope] = LiveView(None, f"{e} (cluster-wide); grant list on all namespaces")
                else:
                    views[scope] = LiveView(None, str(e))
            except DriftdError as e:
                views[scope] = LiveView(None, f"cannot list {info.label}{' in ' + ns if ns else ''}: {e}")

        async with anyio.create_task_group() as tg:
            for s in scopes:
                tg.start_soon(one, s)
        return views

    @staticmethod
    def _lookup(views: Mapping[Scope, LiveView], info: ResourceInfo, ns: str, name: str
                ) -> tuple[bool, Any, str | None]:
        """(known, object or None, error) for one object."""
        for scope in ((info, ns if info.namespaced else None), (info, None)):
            v = views.get(scope)
            if v is None:
                continue
            if v.objects is None:
                return False, None, v.error
            return True, v.objects.get((ns if info.namespaced else "", name)), None
        return False, None, "no live view"

    # --- check ---------------------------------------------------------------------------------

    async def check(self, env: EnvironmentSettings, desired: DesiredState, *,
                    inventory: frozenset[ResourceKey] = frozenset()) -> TargetResult:
        return await self._check(env, desired, inventory, None)

    async def check_objects(self, env: EnvironmentSettings, desired: DesiredState, keys: frozenset[ResourceKey],
                            *, inventory: frozenset[ResourceKey]) -> TargetResult:
        """``check`` restricted to ``keys`` (declared, inventoried or unmanaged objects, as informer
        events name them): drifts only for them, ``resources`` counts only the declared ones among
        them. Keys match on group, kind, namespace and name (not version: an event from the
        ``v1`` informer names the object Git declares at ``v1beta1`` too).

        ``errors`` is the environment's whole current error list, not only the keys': problems of
        the desired state (unknown kinds, bad annotations) and the last per-object errors of objects
        not re-evaluated now, so a pass over a few objects neither hides nor forgets them."""
        return await self._check(env, desired, inventory, frozenset(map(_ident, keys)))

    async def _check(self, env: EnvironmentSettings, desired: DesiredState, inventory: frozenset[ResourceKey],
                     only: frozenset[Ident] | None) -> TargetResult:
        # api_calls: this check's own requests, not those of informers sharing the client.
        with (await self.client()).counting() as calls:
            result = await self._check_counted(env, desired, inventory, only)
        return dataclasses.replace(result, api_calls=calls[0])

    async def _check_counted(self, env: EnvironmentSettings, desired: DesiredState,
                             inventory: frozenset[ResourceKey], only: frozenset[Ident] | None) -> TargetResult:
        ks = self.settings(env)
        planned, errors, _ = await self.plan(env, desired)
        # Git's own keys too: the loader gives a custom cluster-scoped kind the default namespace
        # (it cannot know its scope), the plan drops it; the inventory holds the loader's keys.
        declared = {p.key for p in planned} | {d.key for d in desired.kubernetes}
        declared_names = {(k.kind, k.namespace, k.name) for k in declared}
        # For the inventory, the one place scope is known: cluster-scoped keys without the loader's
        # namespace, so orphans' keys match the cluster's (informer events, the daemon's watched set).
        planned_src = {p.desired.key for p in planned}
        declared_out = frozenset({p.key for p in planned}
                                 | {d.key for d in desired.kubernetes if d.key not in planned_src})
        renamed = {p.desired.key: p.key for p in planned if p.key != p.desired.key}
        # What this environment declares, for the other environments on this cluster (conflicts, prune).
        self._claims[env.name] = frozenset(_ident(k) for k in declared) | frozenset(_ident(k) for k in declared_out)
        self._claimed_at[env.name] = time.monotonic()
        others = self._other_claims(env.name)
        conflicts = {p.key: sorted([env.name, *(e for e, c in (others or {}).items() if _ident(p.key) in c)])
                     for p in planned}
        conflicts = {k: v for k, v in conflicts.items() if len(v) > 1}
        declared_infos = {p.info for p in planned if p.info.namespaced and not p.awaits_crd}
        if only is not None:
            # The desired state's key too: a custom cluster-scoped object's carries a namespace.
            planned = [p for p in planned if _ident(p.key) in only or _ident(p.desired.key) in only]
        disc = await self.discovery()
        extra: list[Scope] = []
        orphans: list[tuple[ResourceKey, ResourceInfo]] = []
        object_errors: dict[ResourceKey, str] = {}
        undetermined: set[ResourceKey] = set()
        for k in sorted(inventory):
            if k.target is not TargetKind.KUBERNETES or (k.kind, k.namespace, k.name) in declared_names \
                    or (only is not None and _ident(k) not in only and _ident(replace(k, namespace="")) not in only):
                continue
            try:
                info = await disc.resolve(k.api_version, k.kind)
            except DriftdError as e:
                object_errors[k] = f"{k}: cannot tell whether it is orphaned: {e}"
                undetermined.add(k)
                continue
            if not info.namespaced and k.namespace:
                if (k.kind, "", k.name) in declared_names:
                    continue
                k = replace(k, namespace="")  # the object's real identity
            orphans.append((k, info))
            extra.append((info, k.namespace or None))
        unmanaged_infos: list[ResourceInfo] = []
        if ks.watch_namespaces:
            seen = set(declared_infos)
            for av, kind in UNMANAGED_KINDS:
                with contextlib.suppress(DriftdError):
                    seen.add(await disc.resolve(av, kind))
            if only is not None:
                wanted = {(g, kind) for g, kind, ns, _ in only if ns in ks.watch_namespaces}
                seen = {i for i in seen if (i.group, i.kind) in wanted}
            unmanaged_infos = sorted(seen, key=lambda i: i.label)
            extra.extend((i, ns) for i in unmanaged_infos for ns in ks.watch_namespaces)
        views = await self._views(await self._scopes(env, planned, extra))
        comparer = await self.comparer(ks.human_managers)
        drifts: list[Drift] = []

        async def judge(p: Planned) -> None:
            if p.disabled:
                return
            if p.key in conflicts:
                # Two environments declare it: whichever reverted would undo the other (ping-pong).
                object_errors[p.key] = (f"{p.key}: conflict: declared by environments "
                                        f"{' and '.join(conflicts[p.key])} on cluster {self.cluster.name}; "
                                        "neither reverts it until one stops declaring it")
                return
            if p.awaits_crd:  # no object of a kind the server does not serve can exist
                drifts.append(Drift(p.key, DriftKind.MISSING))
                return
            known, live, err = self._lookup(views, p.info, p.key.namespace, p.key.name)
            if not known:
                object_errors[p.key] = f"{p.key}: live state unknown: {err}"
                return
            if live is None:
                drifts.append(Drift(p.key, DriftKind.MISSING))
                return
            try:
                v = await comparer.verdict(p, live)
            except DryRunRefused as e:
                object_errors[p.key] = f"{p.key} ({p.desired.source}): {e.message}"
                return
            except DriftdError as e:
                object_errors[p.key] = f"{p.key}: {e}"
                return
            changes = ownership.without_mark(v.changes)  # an object applied before marks existed is in sync
            if changes:
                drifts.append(Drift(p.key, DriftKind.MODIFIED, changes, v.changed_by, v.changed_at))

        async with anyio.create_task_group() as tg:
            for p in planned:
                tg.start_soon(judge, p)
        candidates = [(k, live) for k, info in orphans
                      if (found := self._lookup(views, info, k.namespace, k.name))[0]
                      and (live := found[1]) is not None and not is_disabled(live)
                      and ownership.orphan_verdict(env.name, _ident(k), live, others) is ownership.Orphan.MINE]
        if candidates and not all(self._confirmed(env.name, _ident(k)) for k, _ in candidates):
            # Another environment may be about to declare them (the same commit moved them there and it
            # has not checked that revision yet): give the others a moment to say what they declare.
            waited = 0.0
            while waited < PEER_WAIT and not all(self._confirmed(env.name, _ident(k)) for k, _ in candidates):
                await anyio.sleep(0.25)
                waited += 0.25
            others = self._other_claims(env.name)
        for k, info in orphans:
            known, live, err = self._lookup(views, info, k.namespace, k.name)
            if not known:
                object_errors[k] = f"{k}: cannot tell whether it is orphaned: {err}"
                undetermined.add(k)  # under its real identity: the scope is known
            elif live is not None and not is_disabled(live):
                # Orphaned only when provably this environment's and declared by no other one.
                verdict = ownership.orphan_verdict(env.name, _ident(k), live, others)
                if verdict is ownership.Orphan.MINE and not self._confirmed(env.name, _ident(k)):
                    # Another environment may be about to declare it (the same commit moved it there and
                    # that environment has not checked it yet): decided once every other one has.
                    verdict = ownership.Orphan.UNKNOWN
                if verdict is ownership.Orphan.UNKNOWN:
                    undetermined.add(k)  # kept in the inventory; decided at a later pass
                elif verdict is ownership.Orphan.MINE:
                    meta = live.get("metadata") or {}
                    judged = (str(meta.get("uid", "")), str(meta.get("resourceVersion", "")))
                    drifts.append(Drift(k, DriftKind.ORPHANED, judged=judged if all(judged) else None))
                else:
                    self._orphan_seen.pop((env.name, _ident(k)), None)
                    log.info("orphan.not_mine", env=env.name, object=str(k), why=str(verdict))
        if only is None:  # forget candidates that are no longer orphans (pruned, declared again)
            current = {(env.name, _ident(k)) for k, _ in orphans}
            for gone in [c for c in self._orphan_seen if c[0] == env.name and c not in current]:
                del self._orphan_seen[gone]
        inventory_names = {(k.kind, k.namespace, k.name) for k in inventory}
        for info in unmanaged_infos:
            for ns in ks.watch_namespaces:
                view = views.get((info, ns)) or views.get((info, None))
                if view is None or view.objects is None:
                    continue
                for (ons, name), obj in view.objects.items():
                    if ons != ns or (info.kind, ns, name) in declared_names or (info.kind, ns, name) in \
                            inventory_names or is_system_object(obj):
                        continue
                    if only is not None and (info.group, info.kind, ns, name) not in only:
                        continue
                    key = ResourceKey(TargetKind.KUBERNETES, info.kind, name, ns, info.api_version)
                    drifts.append(Drift(key, DriftKind.UNMANAGED))
        drifts.sort(key=lambda d: (d.key, d.drift))
        errors.extend(self._object_errors(env.name, only, object_errors))
        return TargetResult(TargetKind.KUBERNETES, resources=len(planned), drifts=tuple(drifts),
                            errors=tuple(sorted(set(errors))), undetermined=frozenset(undetermined),
                            declared=declared_out, renamed=renamed)

    def _object_errors(self, env: str, only: frozenset[Ident] | None, found: dict[ResourceKey, str]
                       ) -> list[str]:
        """The environment's per-object errors after this pass: a full pass replaces them, a pass
        over some objects replaces theirs and keeps the others'."""
        if only is None:
            self._errors[env] = dict(found)
        else:
            mine = self._errors.setdefault(env, {})
            for k in [k for k in mine if _ident(k) in only]:
                del mine[k]
            mine.update(found)
        return list(self._errors[env].values())

    def _confirmed(self, env: str, ident: Ident) -> bool:
        """An orphan candidate counts only once every other environment on the cluster has said what
        it declares after the candidate was first seen (an object moved between two environments'
        paths is seen orphaned by one before the other has loaded the move)."""
        now = time.monotonic()
        first = self._orphan_seen.setdefault((env, ident), now)
        peers = set(self._peers()) if self._peers is not None else set(self._claims)
        peers.discard(env)
        # A peer that does not check again (its desired state is in error) holds nobody up for long.
        return now - first >= PEER_WAIT or all(self._claimed_at.get(p, 0.0) > first for p in peers)

    def withdraw(self, env: str) -> None:
        """``env``'s desired state failed to load: what it declared before is no evidence of what it
        declares now (the failed commit may have moved objects into it), so it claims nothing known
        until it is checked again, and every orphan on this cluster is undecided meanwhile."""
        self._claims.pop(env, None)
        self._claimed_at.pop(env, None)

    def _other_claims(self, env: str) -> dict[str, frozenset[Ident]] | None:
        """What the other environments on this cluster declare; None while one of them has not been
        checked yet (then nobody can tell whether an object is someone else's)."""
        peers = set(self._peers()) if self._peers is not None else set(self._claims)
        peers.discard(env)
        for gone in [e for e in self._claims if e != env and e not in peers]:
            del self._claims[gone]  # removed from the config
        if any(p not in self._claims for p in peers):
            return None
        return {p: self._claims[p] for p in peers}

    # --- revert --------------------------------------------------------------------------------

    async def revert(self, env: EnvironmentSettings, desired: DesiredState, drifts: Sequence[Drift], *,
                     dry_run: bool = False) -> tuple[Drift, ...]:
        # Never revert what another environment on this cluster declares (a conflict: ping-pong). Right
        # after a start the others may not have been checked yet: give them a moment to say what they
        # declare (they start together); a peer that cannot load at all does not block us for longer.
        others = self._other_claims(env.name)
        waited = 0.0
        # Once per environment and process: a peer this process never checks (another replica holds it,
        # `driftd sync` of one environment) must not slow every revert down.
        while others is None and waited < PEER_WAIT and env.name not in self._peer_waited:
            await anyio.sleep(0.25)
            waited += 0.25
            others = self._other_claims(env.name)
        if others is None and env.name not in self._peer_waited:
            self._peer_waited.add(env.name)
            log.warning("ownership.peers_unknown", env=env.name, waited=PEER_WAIT,
                        hint="conflicts with environments not checked by this process cannot be detected")
        clash = {i: sorted([env.name, *(e for e, c in (others or {}).items() if _ident(d.key) in c)])
                 for i, d in enumerate(drifts) if d.drift is not DriftKind.UNMANAGED}
        clash = {i: v for i, v in clash.items() if len(v) > 1}
        rest = [d for i, d in enumerate(drifts) if i not in clash]
        done = iter(await apply_mod.revert(self, env, desired, rest, dry_run=dry_run)) if rest else iter(())
        out = [replace(d, action=Action.SKIPPED, reason=f"conflict: declared by environments {' and '.join(clash[i])}")
               if i in clash else next(done) for i, d in enumerate(drifts)]
        return (*out, *done)  # apply_mod.revert may add objects of kinds new CRDs define

    # --- event-driven operation ----------------------------------------------------------------

    async def watch(self, env: EnvironmentSettings, desired: DesiredState,
                    on_change: Callable[[ResourceKey], None], *, task_status: Any = anyio.TASK_STATUS_IGNORED
                    ) -> None:
        """Run informers for every resource type the environment declares (and its watched
        namespaces) until cancelled; ``on_change`` gets the key of each object whose event arrives.
        check() then reads their caches instead of listing. Started with ``tg.start`` it returns
        control once every informer has synced. Informers are shared with the other environments
        on this cluster and reference-counted (informers.py): cancelling one environment's watch
        stops only the informers no other watch holds."""
        ks = self.settings(env)
        planned, _, _ = await self.plan(env, desired)
        disc = await self.discovery()
        extra: list[Scope] = []
        if ks.watch_namespaces:
            for av, kind in UNMANAGED_KINDS:
                with contextlib.suppress(DriftdError):
                    info = await disc.resolve(av, kind)
                    extra.extend((info, ns) for ns in ks.watch_namespaces)
        scopes = await self._scopes(env, planned, extra)
        # Events name objects as the cluster does; Git's keys for custom cluster-scoped objects carry
        # the default namespace (the loader cannot know the scope): name them as Git does.
        aliases = {p.key: p.desired.key for p in planned if p.key != p.desired.key}
        notify = on_change if not aliases else _aliased(on_change, aliases)
        await self._informers.hold(await self.client(), scopes, notify, task_status=task_status)

    def subscribe(self, callback: Callable[[ResourceKey], None]) -> None:
        """``callback(key)`` for every event of every informer of this cluster, whoever holds it."""
        self._informers.subscribe(callback)

    @property
    def informers(self) -> list[Informer]:
        """The informers some environment's watch holds now."""
        return self._informers.held()

    @property
    def shared_informers(self) -> SharedInformers:
        return self._informers


def _aliased(on_change: Callable[[ResourceKey], None], aliases: Mapping[ResourceKey, ResourceKey]
             ) -> Callable[[ResourceKey], None]:
    def notify(k: ResourceKey) -> None:
        on_change(aliases.get(k, k))
    return notify


def _ident(k: ResourceKey) -> Ident:
    return (k.api_version.rpartition("/")[0], k.kind, k.namespace, k.name)


def _with_ns(body: Mapping[str, Any], ns: str) -> dict[str, Any]:
    meta = dict(body.get("metadata") or {})
    meta.setdefault("namespace", ns)
    return {**body, "metadata": meta}

