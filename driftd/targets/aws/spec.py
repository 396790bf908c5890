"""A resource type as a table: :class:`TypeSpec` says what to call and how to map it; :class:`SpecAdapter` does it.

One adapter shape for the common case, so a new type is mostly data:

- **reads**: one paginated list call for the whole region (memoized for the pass, so reading the declared
  resources and listing the unmanaged ones share it), plus per-resource calls (``Read``) made only when a
  property they alone provide is declared;
- **identity**: the name property (most types), a composite of properties (an inline role policy is
  ``role/policy``), or, for types with no name at all (VPC, subnet, route table, EIP, KMS key), the tags
  CloudFormation puts on what it deploys (``aws:cloudformation:stack-name`` = the environment's stack name,
  ``aws:cloudformation:logical-id``) or the equivalent ``driftd:`` tags that ``driftd sync`` puts on what it
  creates;
- **property mapping**: ``Prop(source, get, normalize)`` per CloudFormation property;
- **reverts**: ``Write`` calls, each covering some properties, made only when one of those drifted; all
  mutating calls of every spec adapter go through :meth:`SpecAdapter.write` (one place to wrap);
- **IAM actions**: derived from the calls above (``iam_actions``), so ``driftd permissions`` stays least
  privilege without a hand-kept list.

Pure of client libraries: calls go through ``Ctx``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from ...diff.aws_compare import CompareSpec, tags_to_map
from ...errors import DriftdError
from ...model import AwsDeclaration, Change, ResourceKey
from .actions import iam_action
from .base import Adapter, ApiError, Ctx, Live, changed_top, desired_tags, per_resource, resolved, tag_delta

Item = Mapping[str, Any]  # one element of a list call's answer, or a per-resource read's answer

# Tags CloudFormation puts on every taggable resource it creates; driftd's own for what `driftd sync` creates.
CFN_STACK, CFN_LOGICAL = "aws:cloudformation:stack-name", "aws:cloudformation:logical-id"
DRIFTD_STACK, DRIFTD_LOGICAL = "driftd:stack-name", "driftd:logical-id"
IDENTITY_TAGS = frozenset({DRIFTD_STACK, DRIFTD_LOGICAL})


def camel(operation: str) -> str:
    """``describe_vpcs`` -> ``DescribeVpcs`` (botocore's operation name, as IAM actions spell it)."""
    return "".join(p[:1].upper() + p[1:] for p in operation.split("_"))


@dataclass(frozen=True)
class ListCall:
    """The one paginated call listing every resource of the type in the region."""

    operation: str
    result_key: str
    cursor: tuple[str, str] | None = ("NextToken", "NextToken")  # (request parameter, response field); None: one page
    params: Mapping[str, Any] = field(default_factory=dict)
    lookup: Lookup | None = None  # the same items asked for by name: cheaper when few are declared
    ids_only: bool = False  # the list answers names only (ListTables): items always come from ``lookup``
    region_param: str = ""  # the request parameter taking the pass's region (ListBuckets' BucketRegion)
    memo: str = ""  # the pass memo key, when another type lists the same (both S3 types share ListBuckets)


@dataclass(frozen=True)
class Lookup:
    """The list call's items asked for by name, ``size`` names a call: what a pass that does not list the region
    uses (when at most ``limit`` names are declared; beyond that one list is cheaper). ``params(names)`` builds the
    request; the items are under ``result_key`` ("": the answer is the one item). A name it does not return, or
    answers with one of the ``missing`` error codes, does not exist."""

    operation: str
    params: Callable[[list[str]], dict[str, Any]]
    result_key: str = ""
    size: int = 1
    cursor: tuple[str, str] | None = None  # paginated (request parameter, response field)
    missing: tuple[str, ...] = ()
    limit: int | None = None


@dataclass(frozen=True)
class Read:
    """A per-resource call for properties the list call does not carry. ``params(item)`` builds the request;
    ``absent`` error codes mean "this resource has none of it" (an empty answer), not a failure.
    ``pages``: (result key, request parameter, response field) of a paginated answer, collected under the key.
    ``missing`` error codes mean the resource does not exist (a bucket policy is a read of its bucket)."""

    operation: str
    params: Callable[[Item], dict[str, Any]]
    absent: tuple[str, ...] = ()
    pages: tuple[str, str, str] | None = None
    missing: tuple[str, ...] = ()  # error codes meaning the resource itself does not exist (no bucket policy)
    result_key: str = ""  # the answer under this key ("": the whole answer)
    in_lookup: bool = False  # the list call's lookup answers the same (GetRole): not made for items it found


@dataclass(frozen=True)
class ReadEach:
    """Names from a per-resource ``names`` read (paginated: its ``pages`` key lists them), then one ``operation``
    per name (a role's inline policies: ListRolePolicies, then GetRolePolicy each). Answer: ``{"Items": [...]}``."""

    names: Read
    operation: str
    params: Callable[[Item, str], dict[str, Any]]


@dataclass(frozen=True)
class BatchRead:
    """A call answering for up to ``size`` resources at once (SSM GetParameters): ``params(items)`` builds it, the
    answers are under ``result_key``, ``answer_id`` says whose each is. Addressed by name: with
    ``TypeSpec.from_name``, a pass that does not list the region and needs nothing else skips the list, and a
    name the call does not answer for does not exist."""

    operation: str
    params: Callable[[list[Item]], dict[str, Any]]
    result_key: str
    answer_id: Callable[[Item], str]
    size: int


@dataclass(frozen=True)
class Prop:
    """Where a CloudFormation property's live value comes from: ``source`` is "" (the listed item) or the
    index of a ``Read`` in ``TypeSpec.reads``; ``get`` extracts it (a key of the answer, or a function)."""

    get: str | Callable[[Item], Any]
    source: int | None = None
    normalize: Callable[[Any], Any] | None = None  # applied to declared and live values alike
    none_is_value: bool = False  # None read means "has none" (no function URL), not "not read"


@dataclass(frozen=True)
class Write:
    """One revert call covering ``props``: ``params(live, declared)`` builds the request (``live`` holds the
    ids of the live resource, and under ``"_changed"`` the top-level properties that drifted, for calls that must
    carry only those). A list: one call per element; None or []: no call."""

    operation: str
    props: frozenset[str]
    params: Callable[[Live, Mapping[str, Any]], dict[str, Any] | list[dict[str, Any]] | None]


@dataclass(frozen=True)
class Tags:
    """How tags are read and written. ``read``: None when the listed item carries them (under ``item_key``),
    else a per-resource ``Read``; ``shape``: "list" ({Key, Value}), "map", or "kms" ({TagKey, TagValue})."""

    set_op: str
    set_params: Callable[[Live, dict[str, str]], dict[str, Any]]
    unset_op: str
    unset_params: Callable[[Live, list[str]], dict[str, Any]]
    read: Read | None = None
    item_key: str = "Tags"
    result_key: str = "Tags"
    shape: str = "list"
    batch_read: Callable[[Ctx, list[Item]], Any] | None = None  # reads tags for many items in few calls
    whole: bool = False  # the set call replaces the whole tag set (S3): it gets every desired tag, no unset call
    in_lookup: bool = False  # items found by the list call's lookup carry their tags (GetRole; ListRoles does not)


@dataclass(frozen=True)
class Create:
    operation: str
    params: Callable[[str, Mapping[str, Any], dict[str, str]], dict[str, Any]]  # (name, declared, tags)
    then: tuple[Write, ...] = ()  # settings the create call cannot take, applied when declared
    needs_tags_after: bool = False  # the create call takes no tags: tag the new resource afterwards
    id_from: Callable[[str, Mapping[str, Any]], Live] | None = None  # (name, answer) -> ids of the new resource
    regional: Callable[[str], dict[str, Any]] | None = None  # request parameters naming the pass's region


@dataclass(frozen=True)
class TypeSpec:
    type_name: str
    service: str
    list: ListCall | None  # None: no list-all call (an inline policy): the adapter reads per resource itself
    item_id: Callable[[Item], str]  # the physical id (name) of a listed item
    props: Mapping[str, Prop]
    ids: Callable[[Item], Live]  # what writes need to address the live resource (ARN, URL, id ...)
    name_property: str = ""
    identity: str = "name"  # "name", "tags" (no name: CloudFormation's or driftd's logical-id tags), "composite"
    composite: tuple[str, ...] = ()  # identity = "composite": these properties joined by "/"
    reads: tuple[Read | BatchRead | ReadEach, ...] = ()
    from_name: Callable[[str], Item] | None = None  # the item a name stands for, for reads addressed by name
    tags: Tags | None = None
    writes: tuple[Write, ...] = ()
    create: Create | None = None
    compare: CompareSpec = field(default_factory=lambda: CompareSpec(closed=("/Tags",)))
    global_service: bool = False
    skip_item: Callable[[Item], bool] | None = None  # AWS's own (default VPC ...): never declared, never unmanaged
    immutable: frozenset[str] = frozenset()  # drift here cannot be reverted in place
    extra_read_actions: tuple[str, ...] = ()
    extra_write_actions: tuple[str, ...] = ()  # e.g. iam:PassRole
    not_read: Mapping[str, str] = field(default_factory=dict)  # declared but never read, and why (secrets ...)
    baseline_only: frozenset[str] = frozenset()  # read for baselines only (not CloudFormation's): never compared
    supports_unmanaged: bool = True

    def _actions(self, ops: Sequence[str]) -> set[str]:
        return {iam_action(f"{self.service}:{camel(o)}") for o in ops}  # ListBuckets is s3:ListAllMyBuckets ...

    def read_actions(self) -> tuple[str, ...]:
        ops = [*([self.list.operation] if self.list else []), *(r.operation for r in self.reads),
               *(r.names.operation for r in self.reads if isinstance(r, ReadEach)),
               *([self.list.lookup.operation] if self.list and self.list.lookup else [])]
        if self.tags is not None and self.tags.read is not None:
            ops.append(self.tags.read.operation)
        return tuple(sorted(self._actions(ops) | set(self.extra_read_actions)))

    def write_actions(self) -> tuple[str, ...]:
        ops = [w.operation for w in self.writes]
        if self.tags is not None:
            ops += [self.tags.set_op, self.tags.unset_op]
        if self.create is not None:
            ops += [self.create.operation, *(w.operation for w in self.create.then)]
        return tuple(sorted(self._actions(ops) | set(self.extra_write_actions)))


def _tag_map(raw: Any, shape: str) -> dict[str, str]:
    """Tags as a map, AWS's ``aws:`` tags included (identity needs them)."""
    if shape == "kms" and isinstance(raw, list):
        raw = [{"Key": t.get("TagKey"), "Value": t.get("TagValue")} for t in raw if isinstance(t, Mapping)]
    if isinstance(raw, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return {str(t.get("Key") or t.get("key")): str(t.get("Value", t.get("value")) or "") for t in raw
                if isinstance(t, Mapping) and (t.get("Key") or t.get("key"))}
    return {}


class SpecAdapter(Adapter):
    """An adapter driven by a :class:`TypeSpec`. Subclasses set ``table`` and may override a hook."""

    table: TypeSpec

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        t = getattr(cls, "table", None)
        if t is None:
            return
        cls.type_name = t.type_name
        cls.service = t.service
        cls.name_property = t.name_property
        cls.global_service = t.global_service
        cls.read_permissions = t.read_actions()
        cls.revert_permissions = t.write_actions()
        cls.spec = t.compare
        cls.properties = frozenset({*t.props, *([t.name_property] if t.name_property else []),
                                    *(["Tags"] if t.tags is not None else [])}) - t.baseline_only
        cls.supports_unmanaged = t.supports_unmanaged
        cls.has_tags = t.tags is not None

    # --- identity ----------------------------------------------------------------------------

    def physical_id(self, decl: AwsDeclaration) -> str:
        t = self.table
        hint = decl.metadata.get("driftd.io/physical-id") if isinstance(decl.metadata, Mapping) else None
        if isinstance(hint, str) and hint:
            return hint
        if t.identity == "composite":
            parts = [decl.properties.get(p) for p in t.composite]
            if all(isinstance(p, str) and p for p in parts):
                return "/".join(str(p) for p in parts)
            return decl.logical_id
        if t.identity == "tags":
            return decl.logical_id
        return super().physical_id(decl)

    def identity_known(self, decl: AwsDeclaration) -> bool:
        t = self.table
        if isinstance(decl.metadata, Mapping) and decl.metadata.get("driftd.io/physical-id") is not None:
            return True
        if t.identity == "composite":
            return all(isinstance(decl.properties.get(p), str) and f"/{p}" not in decl.not_checked
                       for p in t.composite)
        if t.identity == "tags":
            return True
        return super().identity_known(decl)

    def stub(self, key: ResourceKey) -> AwsDeclaration:
        return AwsDeclaration(key=key, logical_id=key.name, type=self.type_name,
                              properties={self.name_property: key.name} if self.name_property else {},
                              metadata={"driftd.io/physical-id": key.name})

    def not_read(self, decl: AwsDeclaration) -> dict[str, str]:
        """Declared properties this type never reads, with the reason (shown in coverage reports)."""
        return {p: why for p, why in self.table.not_read.items() if p in decl.properties}

    # --- comparison --------------------------------------------------------------------------

    def normalize(self, props: Mapping[str, Any]) -> dict[str, Any]:
        out = super().normalize(props)
        if isinstance(out.get("Tags"), dict):
            out["Tags"] = {k: v for k, v in out["Tags"].items() if k not in IDENTITY_TAGS}
        for name, p in self.table.props.items():
            if p.normalize is not None and out.get(name) is not None:
                out[name] = p.normalize(out[name])
        return out

    # --- reads -------------------------------------------------------------------------------

    async def _entries(self, ctx: Ctx) -> list[Any]:
        """The list call's answer for the whole region, once per pass."""
        t = self.table
        lc = t.list
        if lc is None:
            raise NotImplementedError(f"{t.type_name} has no list call")

        params = {**lc.params, **({lc.region_param: ctx.region} if lc.region_param else {})}

        async def fetch() -> list[Any]:
            if lc.cursor is None:
                r = await ctx.call(t.service, lc.operation, **params)
                return list(r.get(lc.result_key) or [])
            return await ctx.paginate(t.service, lc.operation, lc.result_key, cursor=lc.cursor, **params)
        got: list[Any] = await ctx.once(lc.memo or f"{t.service}:{t.type_name}", fetch)
        return got if lc.ids_only else [i for i in got if not (t.skip_item and t.skip_item(i))]

    async def items(self, ctx: Ctx) -> list[Any]:
        """Every item of the type in the region, once per pass (a names-only list: each looked up)."""
        t = self.table
        if t.list is None or not t.list.ids_only:
            return await self._entries(ctx)

        async def fetch() -> list[Any]:
            return await self._lookup(ctx, [str(e) for e in await self._entries(ctx)])
        result: list[Any] = await ctx.once(f"{t.service}:{t.type_name}:items", fetch)
        return result

    async def _lookup(self, ctx: Ctx, names: Sequence[str]) -> list[Any]:
        """The items of those ``names`` that exist, through the list call's lookup. A failed call marks its names
        unknown (``ctx.failed``); the others go on."""
        t = self.table
        lk = t.list.lookup if t.list is not None else None
        if lk is None:
            raise NotImplementedError(f"{t.type_name} has no lookup")
        names = sorted(set(names))
        parts = [names[i:i + lk.size] for i in range(0, len(names), lk.size)]
        out: list[Any] = []

        async def one(part: list[str]) -> None:
            try:
                if lk.cursor is not None:
                    got: list[Any] = await ctx.paginate(t.service, lk.operation, lk.result_key, cursor=lk.cursor,
                                                        **lk.params(part))
                else:
                    r = await ctx.call(t.service, lk.operation, **lk.params(part))
                    v = r.get(lk.result_key) if lk.result_key else r
                    got = list(v) if isinstance(v, list) else [v] if v else []
            except ApiError as e:
                if e.code in lk.missing:
                    return
                ctx.failed.update({(t.type_name, n): str(e) for n in part})
                return
            except DriftdError as e:
                ctx.failed.update({(t.type_name, n): str(e) for n in part})
                return
            out.extend(i for i in got if not (t.skip_item and t.skip_item(i)))

        if len(parts) == 1:
            await one(parts[0])  # one call: no task group (an unexpected error keeps its own type)
        else:
            async with anyio.create_task_group() as tg:
                for part in parts:
                    tg.start_soon(one, part)
        return out

    async def _item_tags(self, ctx: Ctx, items: Sequence[Item], looked_up: bool = False) -> dict[int, dict[str, str]]:
        """Tags per item (by position), in as few calls as the type allows."""
        tg = self.table.tags
        if tg is None:
            return {}
        if tg.read is None or (looked_up and tg.in_lookup):
            return {i: _tag_map(it.get(tg.item_key), tg.shape) for i, it in enumerate(items)}
        if tg.batch_read is not None:
            got: dict[int, dict[str, str]] = await tg.batch_read(ctx, list(items))
            return got
        read = tg.read
        out: dict[int, dict[str, str]] = {}

        async def one(i: str) -> Live:
            r = await self._call_read(ctx, read, items[int(i)])
            out[int(i)] = _tag_map(r.get(tg.result_key), tg.shape)
            return {}
        await per_resource(ctx, self.type_name, [str(i) for i in range(len(items))], one)
        return out

    async def _call_read(self, ctx: Ctx, r: Read | ReadEach, it: Item) -> Item:
        if isinstance(r, ReadEach):
            key = r.names.pages[0] if r.names.pages else ""
            names = (await self._call_read(ctx, r.names, it)).get(key) or []
            return {"Items": [await ctx.call(self.service, r.operation, **r.params(it, str(n))) for n in names]}
        try:
            if r.pages is not None:
                key, token_in, token_out = r.pages
                return {key: await ctx.paginate(self.service, r.operation, key, cursor=(token_in, token_out),
                                                **r.params(it))}
            answer = await ctx.call(self.service, r.operation, **r.params(it))
        except ApiError as e:
            if e.code in r.absent:
                return {}
            raise
        return dict(answer.get(r.result_key) or {}) if r.result_key else answer

    async def _batch(self, ctx: Ctx, r: BatchRead, items: Sequence[Item]) -> dict[str, Item]:
        """Answers of a batched read by resource id; a failed call marks its resources unknown. Sequential: the
        few calls it makes are cheap, and an unexpected answer's error keeps its own type."""
        t = self.table
        out: dict[str, Item] = {}
        for i in range(0, len(items), r.size):
            part = list(items[i:i + r.size])
            try:
                answer = await ctx.call(t.service, r.operation, **r.params(part))
            except DriftdError as e:
                ctx.failed.update({(t.type_name, t.item_id(it)): str(e) for it in part})
                continue
            for a in answer.get(r.result_key) or []:
                out[r.answer_id(a)] = a
        return out

    def _index(self, ctx: Ctx, items: Sequence[Item], tags: Mapping[int, dict[str, str]]) -> dict[str, Item]:
        t = self.table
        out: dict[str, Item] = {}
        deployed: dict[str, Item] = {}
        for n, it in enumerate(items):
            out[t.item_id(it)] = it
            tm = tags.get(n, {})
            if t.identity == "tags":
                for stack_key, logical_key in ((CFN_STACK, CFN_LOGICAL), (DRIFTD_STACK, DRIFTD_LOGICAL)):
                    if tm.get(stack_key) == ctx.stack_name and tm.get(logical_key):
                        out[tm[logical_key]] = it
            elif tm.get(CFN_STACK) == ctx.stack_name and tm.get(CFN_LOGICAL):
                deployed[tm[CFN_LOGICAL]] = it  # deployed by CloudFormation without a name: a generated one
        for logical, it in deployed.items():
            out.setdefault(logical, it)  # a resource actually named so wins
        return out

    def _unnamed(self, decls: Sequence[AwsDeclaration], names: set[str]) -> bool:
        """Some declaration has no name and no resource carries its logical id as the name: it may have been
        deployed by CloudFormation under a generated name (found by its logical-id tag, at one tag read each)."""
        t = self.table
        return t.identity == "name" and t.tags is not None and any(
            t.name_property not in d.properties and self.physical_id(d) not in names
            and not (isinstance(d.metadata, Mapping) and d.metadata.get("driftd.io/physical-id")) for d in decls)

    async def _candidates(self, ctx: Ctx, decls: Sequence[AwsDeclaration], wanted: set[str], sources: set[int],
                          listed: bool) -> tuple[list[Any], bool, bool]:
        """The items to read ``wanted`` from, in the fewest calls, and whether they are only assumed to exist
        (built from names, for batched reads that say which exist, when no declared property needs the listed
        item). A pass that lists the region anyway uses that
        list; a declaration that may have a CloudFormation-generated name needs it too (tags of every item)."""
        t = self.table
        lc = t.list
        if lc is None:
            raise NotImplementedError(f"{t.type_name} has no list call")
        by_name = not ctx.unmanaged and t.identity == "name"
        if by_name and t.from_name is not None and sources and not listed and all(
                isinstance(t.reads[s], BatchRead) for s in sources) and not self._unnamed(decls, set()):
            return [t.from_name(n) for n in sorted(wanted)], True, False
        lk = lc.lookup
        if by_name and lk is not None and (lk.limit is None or len(wanted) <= lk.limit):
            found = await self._lookup(ctx, sorted(wanted))
            if not self._unnamed(decls, {t.item_id(i) for i in found}):
                return found, False, True
        if lc.ids_only and t.identity == "name":
            names = {str(e) for e in await self._entries(ctx)}
            if not self._unnamed(decls, names):
                return await self._lookup(ctx, sorted(wanted & names)), False, True
        return await self.items(ctx), False, lc.ids_only

    async def read(self, ctx: Ctx, decls: Sequence[AwsDeclaration]) -> dict[str, Live]:
        t = self.table
        props = self.declared(decls, ctx)
        wanted = {self.physical_id(d) for d in decls}
        sources = {p.source for name, p in t.props.items() if name in props and p.source is not None}
        sources |= {i for i, r in enumerate(t.reads) if isinstance(r, Read) and r.missing}  # they say it exists
        listed = any(p.source is None for name, p in t.props.items() if name in props)  # needs the listed item
        items, assumed, looked_up = await self._candidates(ctx, decls, wanted, sources, listed)
        need_tags_for_identity = t.identity == "tags" or self._unnamed(decls, {t.item_id(i) for i in items})
        if need_tags_for_identity:
            tags = await self._item_tags(ctx, items, looked_up)
        elif "Tags" in props:  # only the declared resources' tags
            mine = [n for n, it in enumerate(items) if t.item_id(it) in wanted]
            got = await self._item_tags(ctx, [items[n] for n in mine], looked_up)
            tags = {mine[k]: v for k, v in got.items()}
        else:
            tags = {}
        index = self._index(ctx, items, tags)
        position = {id(it): n for n, it in enumerate(items)}
        batched: dict[int, dict[str, Item]] = {}
        for s in sorted(sources):
            r = t.reads[s]
            if isinstance(r, BatchRead):
                batched[s] = await self._batch(ctx, r, [index[p] for p in sorted(wanted) if p in index])

        async def one(pid: str) -> Live | None:
            it = index.get(pid)
            if it is None:
                return None
            iid = t.item_id(it)
            if assumed and not all(iid in b for b in batched.values()):
                return None
            answers: dict[int, Item] = {}
            for s in sorted(sources):
                r = t.reads[s]
                if isinstance(r, BatchRead):
                    answers[s] = batched[s].get(iid, {})
                    continue
                if isinstance(r, Read) and r.in_lookup and looked_up:
                    answers[s] = it  # the lookup already answered it
                    continue
                try:
                    answers[s] = await self._call_read(ctx, r, it)
                except ApiError as e:
                    if isinstance(r, Read) and e.code in r.missing:
                        return None
                    raise
            live: Live = {**t.ids(it), "_id": iid}
            if t.name_property:
                live[t.name_property] = iid
            for name, p in t.props.items():
                if name not in props and name != t.name_property:
                    continue
                src = it if p.source is None else answers.get(p.source)
                if src is None:
                    continue
                v = p.get(src) if callable(p.get) else src.get(p.get)
                if v is not None or p.none_is_value:
                    live[name] = v
            if t.tags is not None and ("Tags" in props or t.identity == "tags"):
                tm = tags.get(position[id(it)], {})
                live["Tags"] = {k: v for k, v in tm.items() if not k.startswith("aws:")}
                live["_logical"] = tm.get(DRIFTD_LOGICAL) if tm.get(DRIFTD_STACK) == ctx.stack_name else (
                    tm.get(CFN_LOGICAL) if tm.get(CFN_STACK) == ctx.stack_name else None)
            return live
        live = await per_resource(ctx, self.type_name, wanted, one)
        return {p: v for p, v in live.items() if (self.type_name, p) not in ctx.failed}

    async def list_all(self, ctx: Ctx) -> dict[str, Mapping[str, str]]:
        t = self.table
        need_tags = bool(ctx.tag_filter) or t.identity == "tags"
        if t.list is not None and t.list.ids_only and not need_tags:
            return {str(e): {} for e in await self._entries(ctx)}  # names are enough: look none up
        items = await self.items(ctx)
        tags = await self._item_tags(ctx, items, bool(t.list and t.list.ids_only)) if need_tags else {}
        out: dict[str, Mapping[str, str]] = {}
        for n, it in enumerate(items):
            tm = tags.get(n, {})
            pid = t.item_id(it)
            if t.identity == "tags" and tm.get(DRIFTD_STACK) == ctx.stack_name and tm.get(DRIFTD_LOGICAL):
                pid = tm[DRIFTD_LOGICAL]
            elif t.identity == "tags" and tm.get(CFN_STACK) == ctx.stack_name and tm.get(CFN_LOGICAL):
                pid = tm[CFN_LOGICAL]
            out[pid] = {k: v for k, v in tm.items() if not k.startswith("aws:")}
        return out

    def aliases(self, live: Live) -> set[str]:
        return {str(x) for x in (live.get("_id"), live.get("_logical")) if x}

    # --- writes ------------------------------------------------------------------------------

    async def write(self, ctx: Ctx, operation: str, **params: Any) -> dict[str, Any]:
        """Every mutating call of a spec adapter goes through here (one place to audit or wrap)."""
        return await ctx.call(self.service, operation, **params)

    async def _apply(self, ctx: Ctx, w: Write, live: Live, props: Mapping[str, Any]) -> None:
        params = w.params(live, props)
        for p in ([] if params is None else params if isinstance(params, list) else [params]):
            await self.write(ctx, w.operation, **p)

    async def revert(self, ctx: Ctx, decl: AwsDeclaration, live: Live, changes: Sequence[Change]) -> None:
        from ...errors import TargetError

        t = self.table
        top = changed_top(changes)
        props = resolved(decl)
        stuck = top & t.immutable
        if stuck:
            raise TargetError(f"{', '.join(sorted(stuck))} cannot change without replacing the resource",
                              subject=self.physical_id(decl))
        changed = {**live, "_changed": top}
        for w in t.writes:
            if top & w.props and w.props & set(props):
                await self._apply(ctx, w, changed, props)
        if "Tags" in top and t.tags is not None and t.tags.whole:
            await self.write(ctx, t.tags.set_op, **t.tags.set_params(live, desired_tags(decl, ctx)))
        elif "Tags" in top and t.tags is not None:
            to_set, to_remove = tag_delta(decl, live.get("Tags"), ctx)
            to_remove = [k for k in to_remove if k not in IDENTITY_TAGS]
            if to_set:
                await self.write(ctx, t.tags.set_op, **t.tags.set_params(live, to_set))
            if to_remove:
                await self.write(ctx, t.tags.unset_op, **t.tags.unset_params(live, to_remove))

    def create_tags(self, ctx: Ctx, decl: AwsDeclaration) -> dict[str, str]:
        tags = dict(ctx.tag_filter)
        tags.update(tags_to_map(resolved(decl).get("Tags")))
        if self.table.identity == "tags":  # how the next pass finds a resource that has no name
            tags.update({DRIFTD_STACK: ctx.stack_name, DRIFTD_LOGICAL: decl.logical_id})
        return tags

    async def create(self, ctx: Ctx, decl: AwsDeclaration) -> None:
        from ...errors import TargetError

        t = self.table
        if t.create is None:
            raise TargetError(f"driftd does not create {t.type_name}: create it by hand",
                              subject=self.physical_id(decl))
        props = resolved(decl)
        tags = self.create_tags(ctx, decl) if t.tags is not None else {}
        params = t.create.params(self.physical_id(decl), props, tags)
        if t.create.regional is not None:
            params.update(t.create.regional(ctx.region))
        answer = await self.write(ctx, t.create.operation, **params)
        for memo in (f"{t.service}:{t.type_name}", f"{t.service}:{t.type_name}:items", t.list.memo if t.list else ""):
            ctx.memo.pop(memo, None)  # the next read in this pass sees the new resource
        live: Live = t.create.id_from(self.physical_id(decl), answer) if t.create.id_from else {}
        if t.create.needs_tags_after and tags and t.tags is not None:
            await self.write(ctx, t.tags.set_op, **t.tags.set_params(live, tags))
        live["_changed"] = set(props)
        for w in t.create.then:
            if w.props & set(props):
                await self._apply(ctx, w, live, props)


def kv(tags: Mapping[str, str], key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    return [{key: k, value: v} for k, v in tags.items()]
