"""AWS::EC2::SecurityGroup: rules as sets, one rule per protocol/port range/peer; revert touches only the difference.

Reads: one paginated DescribeSecurityGroups for the region (1,000 groups a
page) when unmanaged groups are wanted, else by group name (200 a call).
Reverts: at most one revoke and one authorize call per direction, plus one
description update, plus tag calls.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from ....diff.aws_compare import CompareSpec
from ....errors import TargetError
from ....jsonpointer import escape
from ....model import AwsDeclaration, Change
from ..base import Adapter, ApiError, Ctx, Live, changed_top, chunks, kv_tags, tag_delta
from ..registry import register
from ..spec import CFN_LOGICAL, CFN_STACK

_PROTO = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6", "all": "-1", "-1": "-1"}
_PEERS_IN = ("CidrIp", "CidrIpv6", "SourceSecurityGroupId", "SourceSecurityGroupName", "SourcePrefixListId")
_PEERS_OUT = ("CidrIp", "CidrIpv6", "DestinationSecurityGroupId", "DestinationPrefixListId")
INGRESS, EGRESS = "SecurityGroupIngress", "SecurityGroupEgress"
NAME_FILTER_MAX = 200  # values one DescribeSecurityGroups filter takes
_IN_DEFAULT_VPC = "driftd:InDefaultVpc"
_DEFAULT_VPC_MEMO = "ec2:default-vpc"


def _cidr(v: str) -> str:
    try:
        return str(ipaddress.ip_network(v.strip(), strict=False))
    except ValueError:
        return v


def normalize_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """One declared or live rule -> canonical: protocol names, int ports (none for 'all'), network CIDRs."""
    proto = str(rule.get("IpProtocol", "-1")).lower()
    proto = _PROTO.get(proto, proto)
    out: dict[str, Any] = {"IpProtocol": proto}
    if proto != "-1":
        for k in ("FromPort", "ToPort"):
            if rule.get(k) is not None:
                out[k] = int(rule[k])
    for k, v in rule.items():
        if k in ("CidrIp", "CidrIpv6") and isinstance(v, str):
            out[k] = _cidr(v)
        elif (k in _PEERS_IN + _PEERS_OUT + ("SourceSecurityGroupOwnerId",) and k not in out) or (
                k == "Description" and v):
            out[k] = v
    return out


def rule_id(rule: Mapping[str, Any]) -> str:
    """Stable identity, e.g. ``tcp:22:0.0.0.0/0``, ``-1:all:sg-123``, ``tcp:1000-2000:pl-1``."""
    r = normalize_rule(rule)
    proto = r["IpProtocol"]
    if proto == "-1":
        ports = "all"
    else:
        lo, hi = r.get("FromPort", "-1"), r.get("ToPort", "-1")
        ports = f"{lo}" if lo == hi else f"{lo}-{hi}"
    peer = next((str(r[k]) for k in _PEERS_IN + _PEERS_OUT if r.get(k)), "?")
    return f"{proto}:{ports}:{peer}"


def rules_from_permissions(perms: Sequence[Mapping[str, Any]], egress: bool) -> list[dict[str, Any]]:
    """EC2's IpPermissions (many peers per entry) -> CloudFormation rules (one peer each)."""
    group_key = "DestinationSecurityGroupId" if egress else "SourceSecurityGroupId"
    pl_key = "DestinationPrefixListId" if egress else "SourcePrefixListId"
    out: list[dict[str, Any]] = []
    for p in perms:
        base: dict[str, Any] = {"IpProtocol": p.get("IpProtocol", "-1")}
        if p.get("FromPort") is not None:
            base["FromPort"] = p["FromPort"]
        if p.get("ToPort") is not None:
            base["ToPort"] = p["ToPort"]
        peers = ([("CidrIp", r.get("CidrIp"), r.get("Description")) for r in p.get("IpRanges") or []]
                 + [("CidrIpv6", r.get("CidrIpv6"), r.get("Description")) for r in p.get("Ipv6Ranges") or []]
                 + [(group_key, r.get("GroupId"), r.get("Description")) for r in p.get("UserIdGroupPairs") or []]
                 + [(pl_key, r.get("PrefixListId"), r.get("Description")) for r in p.get("PrefixListIds") or []])
        for key, value, desc in peers:
            rule = dict(base)
            rule[key] = value
            if desc:
                rule["Description"] = desc
            out.append(normalize_rule(rule))
    return out


def permission(rule: Mapping[str, Any], *, with_description: bool = True) -> dict[str, Any]:
    """A CloudFormation rule -> one EC2 IpPermission."""
    r = normalize_rule(rule)
    p: dict[str, Any] = {"IpProtocol": r["IpProtocol"]}
    if r["IpProtocol"] != "-1":
        p["FromPort"] = r.get("FromPort", -1)
        p["ToPort"] = r.get("ToPort", -1)
    extra = {"Description": r["Description"]} if with_description and r.get("Description") else {}
    if r.get("CidrIp"):
        p["IpRanges"] = [{"CidrIp": r["CidrIp"], **extra}]
    elif r.get("CidrIpv6"):
        p["Ipv6Ranges"] = [{"CidrIpv6": r["CidrIpv6"], **extra}]
    elif r.get("SourceSecurityGroupId") or r.get("DestinationSecurityGroupId"):
        gid = r.get("SourceSecurityGroupId") or r.get("DestinationSecurityGroupId")
        p["UserIdGroupPairs"] = [{"GroupId": gid, **extra}]
    elif r.get("SourcePrefixListId") or r.get("DestinationPrefixListId"):
        pl = r.get("SourcePrefixListId") or r.get("DestinationPrefixListId")
        p["PrefixListIds"] = [{"PrefixListId": pl, **extra}]
    elif r.get("SourceSecurityGroupName"):
        p["UserIdGroupPairs"] = [{"GroupName": r["SourceSecurityGroupName"], **extra}]
    return p


def rule_path(direction: str, rule: Mapping[str, Any]) -> str:
    return f"/{direction}/{escape(rule_id(rule))}"


@register
class SecurityGroup(Adapter):
    type_name = "AWS::EC2::SecurityGroup"
    service = "ec2"
    name_property = "GroupName"
    properties = frozenset({"GroupName", "GroupDescription", "VpcId", "SecurityGroupIngress", "SecurityGroupEgress",
                            "Tags"})
    read_permissions = ("ec2:DescribeSecurityGroups", "ec2:DescribeVpcs")
    revert_permissions = ("ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress",
                          "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupEgress",
                          "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
                          "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
                          "ec2:CreateSecurityGroup", "ec2:CreateTags", "ec2:DeleteTags")
    spec = CompareSpec(sets={f"/{INGRESS}": rule_id, f"/{EGRESS}": rule_id}, closed=("/Tags",))
    baseline_properties = (EGRESS,)  # read with the group anyway: no extra call
    restorable = frozenset({EGRESS})

    def baseline_value(self, prop: str, value: Any) -> Any:
        if prop == EGRESS and isinstance(value, list):
            return sorted((normalize_rule(r) for r in value), key=rule_id)
        return super().baseline_value(prop, value)

    async def restore(self, ctx: Ctx, decl: AwsDeclaration, live: Live, prop: str, value: Any) -> None:
        if prop != EGRESS:
            await super().restore(ctx, decl, live, prop, value)
            return
        await self._sync_rules(ctx, str(live["GroupId"]), EGRESS, value or [], live.get(EGRESS) or [])

    def physical_id(self, decl: AwsDeclaration) -> str:
        name = super().physical_id(decl)
        vpc = decl.properties.get("VpcId")
        if isinstance(vpc, str) and vpc and "/VpcId" not in decl.not_checked:
            return f"{vpc}/{name}"
        return name

    def normalize(self, props: Mapping[str, Any]) -> dict[str, Any]:
        out = super().normalize(props)
        for k in (INGRESS, EGRESS):
            if isinstance(out.get(k), list):
                out[k] = [normalize_rule(r) for r in out[k] if isinstance(r, Mapping)]
        return out

    def aliases(self, live: Live) -> set[str]:
        """A declared ``VpcId`` naming the default VPC reads the group as ``vpc-id/name``, but list_all names a
        default-VPC group by its bare name (as a template without VpcId would): both are the same group."""
        out = {f"{live.get('VpcId')}/{live.get('GroupName')}"}
        if live.get(_IN_DEFAULT_VPC):
            out.add(str(live.get("GroupName")))
        return out

    def qualified(self, ctx: Ctx, pid: str) -> str | None:
        default_vpc = ctx.memo.get(_DEFAULT_VPC_MEMO)  # list_all has looked it up by now
        return f"{default_vpc}/{pid}" if "/" not in pid and isinstance(default_vpc, str) else None

    async def _default_vpc(self, ctx: Ctx) -> str | None:
        async def fetch() -> str | None:
            r = await ctx.call("ec2", "describe_vpcs", Filters=[{"Name": "isDefault", "Values": ["true"]}])
            vpcs = r.get("Vpcs") or []
            return str(vpcs[0]["VpcId"]) if vpcs else None
        result: str | None = await ctx.once(_DEFAULT_VPC_MEMO, fetch)
        return result

    async def _all(self, ctx: Ctx) -> list[dict[str, Any]]:
        async def fetch() -> list[dict[str, Any]]:
            return await ctx.paginate("ec2", "describe_security_groups", "SecurityGroups", MaxResults=1000)
        result: list[dict[str, Any]] = await ctx.once("ec2:security-groups", fetch)
        return result

    def _index(self, groups: Sequence[Mapping[str, Any]], default_vpc: str | None,
               stack_name: str = "") -> dict[str, Live]:
        out: dict[str, Live] = {}
        deployed: dict[str, Live] = {}
        for g in groups:
            live: Live = {
                "GroupId": g["GroupId"],
                "GroupName": g.get("GroupName"),
                "GroupDescription": g.get("Description"),
                "VpcId": g.get("VpcId"),
                INGRESS: rules_from_permissions(g.get("IpPermissions") or [], egress=False),
                EGRESS: rules_from_permissions(g.get("IpPermissionsEgress") or [], egress=True),
                "Tags": g.get("Tags") or [],
                # Not a CloudFormation property (never compared): which ids name this group in list_all.
                _IN_DEFAULT_VPC: default_vpc is not None and g.get("VpcId") == default_vpc,
            }
            out[f"{g.get('VpcId')}/{g.get('GroupName')}"] = live
            if default_vpc is None or g.get("VpcId") == default_vpc:
                out[str(g.get("GroupName"))] = live
            tags = {t.get("Key"): t.get("Value") for t in g.get("Tags") or []}
            if stack_name and tags.get(CFN_STACK) == stack_name and tags.get(CFN_LOGICAL):
                # Deployed by CloudFormation without a GroupName: its name is generated, its logical id is tagged.
                deployed[str(tags[CFN_LOGICAL])] = live
        for logical, live in deployed.items():
            out.setdefault(logical, live)  # a group actually named so wins
        return out

    async def read(self, ctx: Ctx, decls: Sequence[AwsDeclaration]) -> dict[str, Live]:
        pids = {self.physical_id(d) for d in decls}
        # The default VPC decides which groups also answer to their bare name; list_all needs it anyway.
        default_vpc = await self._default_vpc(ctx) if ctx.unmanaged or any("/" not in p for p in pids) else None
        unnamed = any(not isinstance(d.properties.get("GroupName"), str) for d in decls)
        if ctx.unmanaged or len(pids) > NAME_FILTER_MAX or unnamed:
            # 1,000 a page beats 200 names a call; a group declared without GroupName may carry a generated name.
            groups = await self._all(ctx)
        else:
            names = sorted({p.rpartition("/")[2] for p in pids})
            groups = []
            for part in chunks(names, NAME_FILTER_MAX):
                groups += await ctx.paginate("ec2", "describe_security_groups", "SecurityGroups",
                                             Filters=[{"Name": "group-name", "Values": list(part)}])
        index = self._index(groups, default_vpc, ctx.stack_name)
        return {p: index[p] for p in pids if p in index}

    async def list_all(self, ctx: Ctx) -> dict[str, Mapping[str, str]]:
        default_vpc = await self._default_vpc(ctx)
        out: dict[str, Mapping[str, str]] = {}
        for g in await self._all(ctx):
            if g.get("GroupName") == "default":  # every VPC has one; it cannot be deleted or declared away
                continue
            pid = str(g["GroupName"]) if g.get("VpcId") == default_vpc else f"{g.get('VpcId')}/{g['GroupName']}"
            out[pid] = {t["Key"]: t.get("Value", "") for t in g.get("Tags") or []}
        return out

    async def _sync_rules(self, ctx: Ctx, group_id: str, direction: str, desired: Sequence[Mapping[str, Any]],
                          live: Sequence[Mapping[str, Any]]) -> None:
        egress = direction == EGRESS
        dm = {rule_id(r): normalize_rule(r) for r in desired}
        lm = {rule_id(r): normalize_rule(r) for r in live}
        extra = [permission(lm[k], with_description=False) for k in lm if k not in dm]
        missing = [permission(dm[k]) for k in dm if k not in lm]
        redescribe = [permission(dm[k]) for k in dm if k in lm and dm[k].get("Description")
                      and dm[k].get("Description") != lm[k].get("Description")]
        verb = "egress" if egress else "ingress"
        if extra:
            await ctx.call("ec2", f"revoke_security_group_{verb}", GroupId=group_id, IpPermissions=extra)
        if missing:
            await ctx.call("ec2", f"authorize_security_group_{verb}", GroupId=group_id, IpPermissions=missing)
        if redescribe:
            await ctx.call("ec2", f"update_security_group_rule_descriptions_{verb}", GroupId=group_id,
                           IpPermissions=redescribe)

    async def revert(self, ctx: Ctx, decl: AwsDeclaration, live: Live, changes: Sequence[Change]) -> None:
        top = changed_top(changes)
        props = self.normalize(decl.properties)
        gid = str(live["GroupId"])
        if top & {"GroupDescription", "GroupName", "VpcId"}:
            raise TargetError("GroupDescription, GroupName and VpcId cannot change without replacing the group",
                              subject=self.physical_id(decl))
        for direction in (INGRESS, EGRESS):
            if direction in top and isinstance(props.get(direction), list):
                await self._sync_rules(ctx, gid, direction, props[direction], live.get(direction) or [])
        if "Tags" in top:
            await self._tags(ctx, gid, decl, live.get("Tags"))

    async def _tags(self, ctx: Ctx, gid: str, decl: AwsDeclaration, live_tags: Any) -> None:
        to_set, to_remove = tag_delta(decl, live_tags, ctx)
        if to_set:
            await ctx.call("ec2", "create_tags", Resources=[gid], Tags=kv_tags(to_set))
        if to_remove:
            await ctx.call("ec2", "delete_tags", Resources=[gid], Tags=[{"Key": k} for k in to_remove])

    async def create(self, ctx: Ctx, decl: AwsDeclaration) -> None:
        props = self.normalize(decl.properties)
        name = self.physical_id(decl).rpartition("/")[2]
        params: dict[str, Any] = {"GroupName": name, "Description": props.get("GroupDescription") or name}
        if isinstance(props.get("VpcId"), str):
            params["VpcId"] = props["VpcId"]
        tags = dict(ctx.tag_filter)
        tags.update(props.get("Tags") or {})
        if tags:
            params["TagSpecifications"] = [{"ResourceType": "security-group", "Tags": kv_tags(tags)}]
        gid = (await ctx.call("ec2", "create_security_group", **params))["GroupId"]
        if isinstance(props.get(INGRESS), list) and props[INGRESS]:
            await ctx.call("ec2", "authorize_security_group_ingress", GroupId=gid,
                           IpPermissions=[permission(r) for r in props[INGRESS]])
        if isinstance(props.get(EGRESS), list):
            # A new VPC group allows all egress; a declared egress list replaces that default.
            default = {"IpProtocol": "-1", "CidrIp": "0.0.0.0/0"}
            if rule_id(default) not in {rule_id(r) for r in props[EGRESS]}:
                try:
                    await ctx.call("ec2", "revoke_security_group_egress", GroupId=gid,
                                   IpPermissions=[permission(default)])
                except ApiError as e:
                    if not e.code.startswith("InvalidPermission"):
                        raise
            new = [permission(r) for r in props[EGRESS] if rule_id(r) != rule_id(default)]
            if new:
                await ctx.call("ec2", "authorize_security_group_egress", GroupId=gid, IpPermissions=new)
