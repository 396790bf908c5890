"""The adapter contract: one class per CloudFormation type, with declarative metadata.

An adapter knows, for its type: the physical identity of a declaration, how to
read many resources in as few calls as possible (mapping the API's shape onto
CloudFormation's property names), how to normalize, how to revert with the
fewest calls, how to create, and which IAM actions all of that needs. Adapters
make calls only through ``Ctx`` and never import a client library.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from ...diff.aws_compare import CompareSpec, compare, prune_not_checked, split_pointer, tags_to_map
from ...errors import DriftdError, TargetError
from ...model import AwsDeclaration, Change, ResourceKey, TargetKind
from .errors import ApiError as ApiError  # re-exported: adapters catch it with the rest of the contract

if TYPE_CHECKING:
    from .session import AccountSession


Live = dict[str, Any]  # live properties in CloudFormation's shape; only what was read


@dataclass
class Ctx:
    """What an adapter may use during one check or revert: the account, the scope, a per-pass memo."""

    session: AccountSession
    region: str
    tag_filter: Mapping[str, str] = field(default_factory=dict)
    unmanaged: bool = False  # the pass also lists everything in scope: prefer list-all reads
    stack_name: str = ""  # AWS::StackName (the environment's name): finds resources by CloudFormation's tags
    baselines: bool = False  # also read the security-relevant properties templates leave out (diff.baseline)
    memo: dict[str, Any] = field(default_factory=dict)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)  # (type, physical id) -> why it is unknown
    _locks: dict[str, anyio.Lock] = field(default_factory=dict)

    async def call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        return await self.session.call(service, operation, region=self.region, **params)

    async def paginate(self, service: str, operation: str, result_key: str, *,
                       cursor: tuple[str, str] = ("NextToken", "NextToken"), **params: Any) -> list[Any]:
        """``cursor``: (request parameter, response field) carrying the page token."""
        return await self.session.paginate(service, operation, result_key, token_in=cursor[0],
                                           token_out=cursor[1], region=self.region, **params)

    async def once(self, key: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Memoize a read for the rest of the pass (list-all results shared by read and list_all)."""
        if key in self.memo:
            return self.memo[key]
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            if key not in self.memo:
                self.memo[key] = await fn()
            return self.memo[key]


async def per_resource(ctx: Ctx, type_name: str, ids: Iterable[str],
                       fn: Callable[[str], Awaitable[Live | None]]) -> dict[str, Live]:
    """Run ``fn(id)`` for each id concurrently (the account limiter bounds it). A failure marks that one
    resource unknown in ``ctx.failed``; the others go on. ``None`` means the resource does not exist."""
    out: dict[str, Live] = {}

    async def one(pid: str) -> None:
        try:
            live = await fn(pid)
        except DriftdError as e:
            ctx.failed[(type_name, pid)] = str(e)
            return
        if live is not None:
            out[pid] = live

    async with anyio.create_task_group() as tg:
        for pid in sorted(set(ids)):
            tg.start_soon(one, pid)
    return out


class Adapter(ABC):
    type_name: ClassVar[str]
    service: ClassVar[str]  # botocore service name
    name_property: ClassVar[str]  # the property holding the physical name
    global_service: ClassVar[bool] = False  # IAM, Route53: not regional
    read_permissions: ClassVar[tuple[str, ...]]
    revert_permissions: ClassVar[tuple[str, ...]]  # includes what create needs
    spec: ClassVar[CompareSpec] = CompareSpec(closed=("/Tags",))
    # The top-level properties this adapter reads and compares. Others a template declares (Lambda's Code,
    # an ECR lifecycle policy ...) are not checked: comparing what was never read would report it removed.
    properties: ClassVar[frozenset[str]]
    supports_unmanaged: ClassVar[bool] = True
    has_tags: ClassVar[bool] = True
    # Security-relevant properties recorded as a baseline when the template leaves them out (driftd.diff.baseline),
    # and those of them restore() may put back (the others are reported, never reverted).
    baseline_properties: ClassVar[tuple[str, ...]] = ()
    restorable: ClassVar[frozenset[str]] = frozenset()

    # --- identity ----------------------------------------------------------------------------

    def physical_id(self, decl: AwsDeclaration) -> str:
        """The live name. Declarations already carry it as ``key.name`` (a ``driftd.io/physical-id`` Metadata
        hint, else the name property, else the logical id); the name property wins when both are present."""
        v = decl.properties.get(self.name_property)
        if isinstance(v, str) and v:
            return v
        return decl.key.name or decl.logical_id

    def identity_known(self, decl: AwsDeclaration) -> bool:
        """False when the name property could not be resolved without a stack: the live counterpart is
        unknown, so the resource is neither compared nor reported missing."""
        hint = decl.metadata.get("driftd.io/physical-id") if isinstance(decl.metadata, Mapping) else None
        return hint is not None or f"/{self.name_property}" not in decl.not_checked

    def aliases(self, live: Live) -> set[str]:
        """Every id ``list_all`` may give the live resource behind ``live`` (besides the id it was read by).

        The target subtracts these from the listing to find unmanaged resources: a resource known under two
        ids (a security group by ``vpc-id/name`` and, in the default VPC, by its bare name) must be known
        under both, or the declared resource is also reported as unmanaged under the same key."""
        return set()

    def qualified(self, ctx: Ctx, pid: str) -> str | None:
        """A longer id for a listed resource whose short id is also a declared key (two resources of one name,
        told apart by a scope the short id leaves out, such as a security group's VPC). None: no longer id."""
        return None

    def stub(self, key: ResourceKey) -> AwsDeclaration:
        """A declaration with no checked properties: reading it only says whether the resource exists."""
        return AwsDeclaration(key=key, logical_id=key.name, type=self.type_name,
                              properties={self.name_property: key.name})

    def key_for(self, physical_id: str, region: str) -> ResourceKey:
        return ResourceKey(TargetKind.AWS, self.type_name, physical_id, "" if self.global_service else region)

    # --- comparison --------------------------------------------------------------------------

    def normalize(self, props: Mapping[str, Any]) -> dict[str, Any]:
        """Both sides go through this before comparing. Subclasses extend it per property."""
        out = dict(props)
        if self.has_tags and "Tags" in out:
            out["Tags"] = tags_to_map(out["Tags"])
        return out

    def compare(self, decl: AwsDeclaration, live: Mapping[str, Any], tag_filter: Mapping[str, str]) -> list[Change]:
        desired = {k: v for k, v in self.normalize(decl.properties).items() if k in self.properties}
        actual = self.normalize(live)
        if isinstance(actual.get("Tags"), dict) and isinstance(desired.get("Tags"), dict):
            # The scope tag is driftd's own marker: live may carry it even when Git does not declare it.
            actual["Tags"] = {k: v for k, v in actual["Tags"].items() if k in desired["Tags"] or k not in tag_filter}
        return compare(desired, actual, self.spec, decl.not_checked)

    def declared(self, decls: Iterable[AwsDeclaration], ctx: Ctx | None = None) -> set[str]:
        """Top-level properties any of ``decls`` declares: read only what is compared (and, with ``ctx`` asking
        for baselines, the baseline properties too)."""
        out = {k for d in decls for k in d.properties}
        if ctx is not None and ctx.baselines:
            out |= set(self.baseline_properties)
        return out

    def baseline(self, decl: AwsDeclaration, live: Mapping[str, Any]) -> dict[str, Any]:
        """The baseline properties ``decl`` leaves out (or declares through what needs the deployed stack, such as
        a Lambda role's ``!GetAtt``), as read (normalized by ``baseline_value``)."""
        return {p: self.baseline_value(p, live.get(p)) for p in self.baseline_properties
                if p not in decl.properties and p in live}

    def baseline_value(self, prop: str, value: Any) -> Any:
        """One baseline property's canonical form (sets sorted). Subclasses refine per property."""
        if isinstance(value, list) and all(isinstance(x, str) for x in value):
            return sorted(value)
        return value

    async def restore(self, ctx: Ctx, decl: AwsDeclaration, live: Live, prop: str, value: Any) -> None:
        """Put one undeclared property back to its baseline ``value`` (only for ``restorable`` properties)."""
        raise TargetError(f"{prop} is not restored automatically: re-take the baseline (driftd baseline) or "
                          "change it back by hand", subject=self.physical_id(decl))

    # --- I/O -----------------------------------------------------------------------------------

    @abstractmethod
    async def read(self, ctx: Ctx, decls: Sequence[AwsDeclaration]) -> dict[str, Live]:
        """Live properties by physical id, for those of ``decls`` that exist. Absent means missing."""

    async def list_all(self, ctx: Ctx) -> dict[str, Mapping[str, str]]:
        """Every resource of this type in the region: physical id -> tags (for the scope's tag filter)."""
        raise NotImplementedError

    @abstractmethod
    async def revert(self, ctx: Ctx, decl: AwsDeclaration, live: Live, changes: Sequence[Change]) -> None: ...

    @abstractmethod
    async def create(self, ctx: Ctx, decl: AwsDeclaration) -> None: ...


def resolved(decl: AwsDeclaration) -> dict[str, Any]:
    """The declared properties without the unresolved ones: what create and revert may write."""
    return prune_not_checked(decl.properties, decl.not_checked)[0]


def changed_top(changes: Iterable[Change]) -> set[str]:
    """The top-level properties a set of changes touches."""
    return {split_pointer(c.path)[0] for c in changes if split_pointer(c.path)}


def desired_tags(decl: AwsDeclaration, ctx: Ctx) -> dict[str, str]:
    """Declared tags plus the scope's tag filter (so what driftd creates stays in scope)."""
    tags = dict(ctx.tag_filter)
    tags.update(tags_to_map(decl.properties.get("Tags")))
    return tags


def tag_delta(decl: AwsDeclaration, live_tags: Any, ctx: Ctx) -> tuple[dict[str, str], list[str]]:
    """(tags to set, tag keys to remove) to bring live tags to the declared ones, keeping scope tags."""
    want = desired_tags(decl, ctx)
    have = tags_to_map(live_tags)
    to_set = {k: v for k, v in want.items() if have.get(k) != v}
    to_remove = [k for k in have if k not in want]
    return to_set, to_remove


def kv_tags(tags: Mapping[str, str], key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    return [{key: k, value: v} for k, v in tags.items()]


def chunks(items: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]
