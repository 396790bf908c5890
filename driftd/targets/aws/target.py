"""AwsTarget: one environment's AWS declarations against its account and region.

A check reads each declared type in batches (all types concurrently, calls
bounded per account), compares declared properties only, finds orphans (keys
declared at the last revision, still live) and unmanaged resources (in the
region and tag scope, of a type the environment declares, that nothing
declares), and attributes modifications with CloudTrail. A read that fails
makes its resources unknown (``TargetResult.errors``), never drift.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import anyio

from ...config import AwsAccountSettings, EnvironmentSettings
from ...diff.aws_compare import split_pointer
from ...errors import DriftdError, TargetError
from ...log import get_logger
from ...model import (
    Action,
    AwsDeclaration,
    Coverage,
    DesiredState,
    Drift,
    DriftKind,
    NotChecked,
    ResourceKey,
    TargetKind,
    TargetResult,
)
from . import registry
from .attribution import Attributor
from .base import Adapter, Ctx, Live
from .session import AccountSession, count_calls

log = get_logger(__name__)

# Creation order: what others refer to comes first (a role before the function that assumes it,
# a bucket before its policy, a zone's records last).
CREATE_ORDER = ("AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::RouteTable", "AWS::KMS::Key", "AWS::KMS::Alias",
                "AWS::IAM::Role", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy", "AWS::IAM::Policy",
                "AWS::IAM::InstanceProfile", "AWS::EC2::SecurityGroup", "AWS::EC2::EIP", "AWS::S3::Bucket",
                "AWS::S3::BucketPolicy", "AWS::SSM::Parameter", "AWS::SecretsManager::Secret", "AWS::Logs::LogGroup",
                "AWS::SNS::Topic", "AWS::SQS::Queue", "AWS::DynamoDB::Table", "AWS::ECR::Repository",
                "AWS::Lambda::Function", "AWS::EC2::LaunchTemplate", "AWS::AutoScaling::AutoScalingGroup",
                "AWS::ElasticLoadBalancingV2::TargetGroup", "AWS::ElasticLoadBalancingV2::Listener",
                "AWS::CloudWatch::Alarm", "AWS::Route53::RecordSet")
NEVER_DELETE = "driftd never deletes AWS resources: delete it by hand, or declare it in Git"


def _in_scope(tags: Mapping[str, str], tag_filter: Mapping[str, str]) -> bool:
    return all(tags.get(k) == v for k, v in tag_filter.items())


class AwsTarget:
    kind = TargetKind.AWS

    def __init__(self, accounts: AwsAccountSettings | Mapping[str, AwsAccountSettings]) -> None:
        """One account (what the engine's target pool builds) or several by name."""
        if isinstance(accounts, AwsAccountSettings):
            accounts = {accounts.name: accounts}
        self._accounts = dict(accounts)
        self._sessions: dict[str, AccountSession] = {}
        self._attributors: dict[str, Attributor] = {}
        self.last_calls: Counter[str] = Counter()  # calls of the last check, by "service:Operation"

    def session(self, account: str) -> AccountSession:
        s = self._sessions.get(account)
        if s is None:
            settings = self._accounts.get(account)
            if settings is None:
                raise TargetError(f"no [[aws_accounts]] named {account!r}", subject=account)
            s = self._sessions[account] = AccountSession(settings)
            self._attributors[account] = Attributor(s, enabled=settings.cloudtrail)
        return s

    def _ctx(self, env: EnvironmentSettings, *, unmanaged: bool) -> Ctx:
        assert env.aws is not None
        s = self.session(env.aws.account)
        return Ctx(session=s, region=s.region, tag_filter=dict(env.aws.tag_filter), unmanaged=unmanaged,
                   stack_name=env.name, baselines=env.aws.baselines)

    # --- check -----------------------------------------------------------------------------------

    async def watch(self, env: EnvironmentSettings, desired: DesiredState, on_change: Callable[[ResourceKey], None],
                    *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """AWS pushes nothing driftd can follow: started at once, the daemon polls with ``check``."""
        task_status.started()

    async def check_objects(self, env: EnvironmentSettings, desired: DesiredState, keys: frozenset[ResourceKey],
                            *, inventory: frozenset[ResourceKey] = frozenset()) -> TargetResult:
        """No per-object reads: a full check, its drifts restricted to ``keys``."""
        result = await self.check(env, desired, inventory=inventory)
        return replace(result, drifts=tuple(d for d in result.drifts if d.key in keys))

    async def check(self, env: EnvironmentSettings, desired: DesiredState, *,
                    inventory: frozenset[ResourceKey] = frozenset()) -> TargetResult:
        if env.aws is None:
            return TargetResult(target=TargetKind.AWS, resources=0)
        with count_calls() as calls:
            ctx = self._ctx(env, unmanaged=env.aws.unmanaged)
            undetermined: set[ResourceKey] = set()
            not_checked: list[NotChecked] = []
            undeclared: dict[ResourceKey, dict[str, Any]] = {}
            drifts, errors, coverage, checked = await self._check(ctx, env, desired, inventory, undetermined,
                                                                  not_checked, undeclared)
            drifts = await self._attribute(env, ctx, drifts)
        self.last_calls = calls
        cov = Coverage(checked=checked, declared=len(desired.aws),
                       not_checked=tuple(sorted(not_checked, key=lambda n: n.key)))
        return TargetResult(target=TargetKind.AWS, resources=checked, drifts=tuple(drifts), errors=tuple(errors),
                            api_calls=sum(calls.values()), coverage=coverage, undetermined=frozenset(undetermined),
                            checked_coverage=cov, undeclared_live=undeclared)

    async def _check(self, ctx: Ctx, env: EnvironmentSettings, desired: DesiredState,
                     inventory: frozenset[ResourceKey], undetermined: set[ResourceKey],
                     not_checked: list[NotChecked], undeclared: dict[ResourceKey, dict[str, Any]]
                     ) -> tuple[list[Drift], list[str], dict[str, tuple[int, int]], int]:
        by_type = _group(desired.aws)
        for d in desired.aws:
            why = unchecked_reason(d)
            if why is not None:
                not_checked.append(NotChecked(d.key, why))
        declared_keys = {d.key for d in desired.aws}
        orphans: dict[str, list[AwsDeclaration]] = defaultdict(list)
        for key in sorted(inventory):
            if key.target is TargetKind.AWS and key not in declared_keys:
                a = registry.get(key.kind)
                if a is not None:
                    orphans[key.kind].append(a.stub(key))
        drifts: list[Drift] = []
        errors: list[str] = []
        coverage: dict[str, tuple[int, int]] = {}
        checked = 0

        async def one_type(type_name: str) -> None:
            nonlocal checked
            adapter = registry.get(type_name)
            assert adapter is not None
            decls = by_type.get(type_name, [])
            try:
                live = await adapter.read(ctx, decls) if decls else {}
            except DriftdError as e:
                errors.extend(f"{d.key}: unknown: {e}" for d in decls)
                not_checked.extend(NotChecked(d.key, f"read failed: {e}") for d in decls)
                undetermined.update(o.key for o in orphans.get(type_name, []))
                return
            except Exception as e:
                # A bug, or an answer of a shape the adapter did not expect: its objects are unknown
                # (error), the other types of this environment and the other environments go on.
                log.exception("aws.adapter_crashed", adapter=type_name)
                errors.extend(f"{d.key}: unknown: {type_name} adapter failed: {type(e).__name__}: {e}"
                              for d in decls)
                not_checked.extend(NotChecked(d.key, f"adapter failed: {type(e).__name__}") for d in decls)
                undetermined.update(o.key for o in orphans.get(type_name, []))
                return
            declared_pids: set[str] = set()
            for d in decls:
                pid = adapter.physical_id(d)
                declared_pids.add(pid)
                if (type_name, pid) in ctx.failed:
                    errors.append(f"{d.key}: unknown: {ctx.failed[(type_name, pid)]}")
                    not_checked.append(NotChecked(d.key, f"read failed: {ctx.failed[(type_name, pid)]}"))
                    continue
                checked += 1
                if pid not in live:
                    drifts.append(Drift(key=d.key, drift=DriftKind.MISSING))
                    continue
                declared_pids |= adapter.aliases(live[pid])
                if ctx.baselines:
                    values = adapter.baseline(d, live[pid])
                    if values:
                        undeclared[d.key] = values
                changes = adapter.compare(d, live[pid], ctx.tag_filter)
                if changes:
                    drifts.append(Drift(key=d.key, drift=DriftKind.MODIFIED, changes=tuple(changes)))
            orphan_pids = await self._orphans(ctx, adapter, orphans.get(type_name, []), drifts, errors, undetermined)
            if decls and env.aws is not None and env.aws.unmanaged and adapter.supports_unmanaged:
                await self._unmanaged(ctx, adapter, declared_pids | orphan_pids, declared_keys, drifts, errors,
                                      coverage)

        async with anyio.create_task_group() as tg:
            for t in sorted(set(by_type) | set(orphans)):
                tg.start_soon(one_type, t)
        drifts.sort(key=lambda x: (x.key, str(x.drift)))
        return drifts, sorted(errors), coverage, checked

    async def _orphans(self, ctx: Ctx, adapter: Adapter, stubs: Sequence[AwsDeclaration], drifts: list[Drift],
                       errors: list[str], undetermined: set[ResourceKey]) -> set[str]:
        if not stubs:
            return set()
        try:
            live = await adapter.read(ctx, stubs)
        except Exception as e:  # DriftdError or a crash: either way these objects are unknown
            if not isinstance(e, DriftdError):
                log.exception("aws.adapter_crashed", adapter=adapter.type_name)
            errors.extend(f"{s.key}: unknown: {e}" for s in stubs)
            undetermined.update(s.key for s in stubs)
            return set()
        pids = set()
        for s in stubs:
            pid = adapter.physical_id(s)
            pids.add(pid)
            if pid in live:
                pids |= adapter.aliases(live[pid])
                drifts.append(Drift(key=s.key, drift=DriftKind.ORPHANED, reason=NEVER_DELETE))
        return pids

    async def _unmanaged(self, ctx: Ctx, adapter: Adapter, known: set[str], declared_keys: set[ResourceKey],
                         drifts: list[Drift], errors: list[str], coverage: dict[str, tuple[int, int]]) -> None:
        try:
            everything = await adapter.list_all(ctx)
        except Exception as e:  # DriftdError or a crash: unmanaged resources of this type are unknown
            if not isinstance(e, DriftdError):
                log.exception("aws.adapter_crashed", adapter=adapter.type_name)
            errors.append(f"{adapter.type_name}: unmanaged resources unknown: {e}")
            return
        in_scope = {pid for pid, tags in everything.items() if _in_scope(tags, ctx.tag_filter)}
        # A key is one drift in every report (the engine keys drifts by it): an unmanaged resource whose short id
        # is a declared key (a same-named group in another VPC) is reported under its longer id, never under the
        # declared resource's key, which would hide that resource's own drift.
        unmanaged: dict[str, ResourceKey] = {}
        for pid in in_scope - known:
            key = adapter.key_for(pid, ctx.region)
            if key in declared_keys:
                longer = adapter.qualified(ctx, pid)
                if longer is None or longer in known:
                    continue
                key = adapter.key_for(longer, ctx.region)
                if key in declared_keys:
                    continue
            unmanaged[pid] = key
        for pid in sorted(unmanaged):
            drifts.append(Drift(key=unmanaged[pid], drift=DriftKind.UNMANAGED))
        coverage[adapter.type_name] = (len(in_scope) - len(unmanaged), len(in_scope))

    async def _attribute(self, env: EnvironmentSettings, ctx: Ctx, drifts: list[Drift]) -> list[Drift]:
        assert env.aws is not None
        attributor = self._attributors[env.aws.account]
        targets = [i for i, d in enumerate(drifts) if d.drift in (DriftKind.MODIFIED, DriftKind.MISSING)]
        if not attributor.enabled or not targets:
            return drifts
        out = list(drifts)

        async def one(i: int) -> None:
            d = out[i]
            # CloudTrail names resources by their physical name; a security group's key may carry its VPC.
            who, when = await attributor.last_change(d.key.name.rpartition("/")[2], ctx.region)
            if who or when:
                out[i] = replace(d, changed_by=who, changed_at=when)

        async with anyio.create_task_group() as tg:
            for i in targets:
                tg.start_soon(one, i)
        return out

    # --- revert ----------------------------------------------------------------------------------

    async def revert(self, env: EnvironmentSettings, desired: DesiredState, drifts: Sequence[Drift], *,
                     dry_run: bool = False) -> tuple[Drift, ...]:
        if env.aws is None:
            return tuple(replace(d, action=Action.SKIPPED, reason="no AWS target") for d in drifts)
        ctx = self._ctx(env, unmanaged=False)
        decls = {d.key: d for d in desired.aws}
        results: dict[int, Drift] = {}
        work: dict[str, list[tuple[int, Drift, AwsDeclaration]]] = defaultdict(list)
        for i, d in enumerate(drifts):
            decl = decls.get(d.key)
            if d.drift in (DriftKind.ORPHANED, DriftKind.UNMANAGED):
                results[i] = replace(d, action=Action.SKIPPED, reason=NEVER_DELETE)
            elif decl is None or registry.get(decl.type) is None:
                results[i] = replace(d, action=Action.SKIPPED, reason="not declared at this revision, or unsupported")
            elif dry_run:
                verb = "create" if d.drift is DriftKind.MISSING else "revert"
                results[i] = replace(d, action=Action.SKIPPED, reason=f"dry run: would {verb}")
            else:
                work[decl.type].append((i, d, decl))
        order = {t: n for n, t in enumerate(CREATE_ORDER)}
        for type_name in sorted(work, key=lambda t: order.get(t, len(order))):
            adapter = registry.get(type_name)
            assert adapter is not None
            await self._revert_type(ctx, adapter, work[type_name], results)
        return tuple(results[i] for i in range(len(drifts)))

    async def _revert_type(self, ctx: Ctx, adapter: Adapter, items: Iterable[tuple[int, Drift, AwsDeclaration]],
                           results: dict[int, Drift]) -> None:
        items = list(items)
        modified = [decl for _, d, decl in items if d.drift in (DriftKind.MODIFIED, DriftKind.UNDECLARED)]
        live: dict[str, Live] = {}
        read_error: str | None = None
        if modified:
            try:
                live = await adapter.read(ctx, modified)  # fresh: never revert from a stale view
            except Exception as e:  # DriftdError or a crash: never revert from what could not be read
                if not isinstance(e, DriftdError):
                    log.exception("aws.adapter_crashed", adapter=adapter.type_name)
                read_error = f"{type(e).__name__}: {e}" if not isinstance(e, DriftdError) else str(e)

        async def one(i: int, d: Drift, decl: AwsDeclaration) -> None:
            pid = adapter.physical_id(decl)
            try:
                if d.drift is DriftKind.MISSING:
                    await adapter.create(ctx, decl)
                else:
                    if read_error or (adapter.type_name, pid) in ctx.failed:
                        raise TargetError(read_error or ctx.failed[(adapter.type_name, pid)], subject=pid)
                    if pid not in live:
                        raise TargetError("deleted since the check; it will be recreated next pass", subject=pid)
                    changes = adapter.compare(decl, live[pid], ctx.tag_filter)
                    if changes:
                        await adapter.revert(ctx, decl, live[pid], changes)
                    # Undeclared properties go back to their baseline (the change's expected value) where safe.
                    unsafe = []
                    for prop, value in _undeclared(adapter, decl, d):
                        if prop not in adapter.restorable:
                            unsafe.append(prop)
                        elif adapter.baseline(decl, live[pid]).get(prop, value) != adapter.baseline_value(prop, value):
                            await adapter.restore(ctx, decl, live[pid], prop, value)
                    if unsafe:
                        raise TargetError(f"{', '.join(unsafe)} not restored automatically (not safe to undo "
                                          "blindly): change it back by hand, or re-take the baseline with "
                                          "driftd baseline", subject=pid)
                results[i] = replace(d, action=Action.REVERTED, reason=None)
                log.info("aws.reverted", object=str(d.key), drift=str(d.drift))
            except DriftdError as e:
                results[i] = replace(d, action=Action.REVERT_FAILED, reason=str(e))
                log.warning("aws.revert_failed", object=str(d.key), reason=str(e))
            except (KeyError, TypeError, ValueError) as e:  # a declaration missing what the API requires
                results[i] = replace(d, action=Action.REVERT_FAILED,
                                     reason=f"declaration cannot be applied: {type(e).__name__}: {e}")
                log.warning("aws.revert_failed", object=str(d.key), reason=str(e))
            except Exception as e:  # a bug in one adapter fails its reverts, not the others'
                results[i] = replace(d, action=Action.REVERT_FAILED, reason=f"adapter failed: {type(e).__name__}: {e}")
                log.exception("aws.adapter_crashed", adapter=adapter.type_name, object=str(d.key))

        async with anyio.create_task_group() as tg:
            for i, d, decl in items:
                tg.start_soon(one, i, d, decl)

    async def aclose(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for s in sessions.values():
            await s.aclose()


def _group(decls: Iterable[AwsDeclaration]) -> dict[str, list[AwsDeclaration]]:
    out: dict[str, list[AwsDeclaration]] = defaultdict(list)
    for d in decls:
        a = registry.get(d.type)
        if a is not None and a.identity_known(d):
            out[d.type].append(d)
    return dict(out)


def _undeclared(adapter: Adapter, decl: AwsDeclaration, d: Drift) -> list[tuple[str, Any]]:
    """(property, baseline value) for each change of ``d`` that is about an undeclared baseline property."""
    out = []
    for c in d.changes:
        segs = split_pointer(c.path)
        if len(segs) == 1 and segs[0] in adapter.baseline_properties and segs[0] not in decl.properties:
            out.append((segs[0], c.expected))
    return out


def unchecked_reason(decl: AwsDeclaration) -> str | None:
    """Why a declaration cannot be compared at all (None: it can). Pure: no calls."""
    a = registry.get(decl.type)
    if a is None:
        return f"driftd has no adapter for {decl.type}"
    if not a.identity_known(decl):
        return (f"its name ({a.name_property or 'identity'}) needs the deployed stack: declare it, or set Metadata "
                "driftd.io/physical-id")
    return None


def supported(decl: AwsDeclaration) -> bool:
    return registry.get(decl.type) is not None


__all__ = ["AwsTarget", "supported", "unchecked_reason"]
