"""AWS::Route53::RecordSet: Type, TTL, ResourceRecords (a set), AliasTarget, routing scalars.

Physical id: ``<fqdn>:<TYPE>`` (plus ``:<SetIdentifier>``). Reads: one
ListHostedZones for the account, then ListResourceRecordSets once per zone
that holds a declared record (300 records a page). Revert and create: one
ChangeResourceRecordSets UPSERT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ....diff.aws_compare import CompareSpec
from ....errors import TargetError
from ....model import AwsDeclaration, Change, ResourceKey
from ..base import Adapter, Ctx, Live, per_resource, resolved
from ..registry import register

_SCALARS = ("TTL", "Weight", "Region", "Failover", "MultiValueAnswer", "HealthCheckId", "SetIdentifier")


def fqdn(name: str) -> str:
    n = name.strip().lower().replace("\\052", "*")
    return n if n.endswith(".") else n + "."


def zone_id(v: str) -> str:
    return v.rsplit("/", 1)[-1]


@register
class RecordSet(Adapter):
    type_name = "AWS::Route53::RecordSet"
    service = "route53"
    name_property = "Name"
    properties = frozenset({"Name", "Type", "TTL", "ResourceRecords", "AliasTarget", "SetIdentifier", "Weight",
                            "Region", "Failover", "MultiValueAnswer", "HealthCheckId"})
    global_service = True
    read_permissions = ("route53:ListHostedZones", "route53:ListResourceRecordSets")
    revert_permissions = ("route53:ChangeResourceRecordSets",)
    spec = CompareSpec(sets={"/ResourceRecords": str})
    supports_unmanaged = False
    has_tags = False

    def physical_id(self, decl: AwsDeclaration) -> str:
        p = decl.properties
        if not isinstance(p.get("Name"), str) or not isinstance(p.get("Type"), str):
            return decl.key.name or decl.logical_id
        pid = f"{fqdn(p['Name'])}:{str(p['Type']).upper()}"
        return f"{pid}:{p['SetIdentifier']}" if p.get("SetIdentifier") else pid

    def stub(self, key: ResourceKey) -> AwsDeclaration:
        name, _, rest = key.name.partition(":")
        rtype, _, set_id = rest.partition(":")
        props: dict[str, Any] = {"Name": name, "Type": rtype}
        if set_id:
            props["SetIdentifier"] = set_id
        return AwsDeclaration(key=key, logical_id=key.name, type=self.type_name, properties=props)

    def normalize(self, props: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in props.items() if k not in ("HostedZoneId", "HostedZoneName", "Comment")}
        if isinstance(out.get("Name"), str):
            out["Name"] = fqdn(out["Name"])
        if isinstance(out.get("Type"), str):
            out["Type"] = out["Type"].upper()
        if isinstance(out.get("AliasTarget"), Mapping):
            a = dict(out["AliasTarget"])
            if isinstance(a.get("DNSName"), str):
                a["DNSName"] = fqdn(a["DNSName"])
            out["AliasTarget"] = a
        return out

    async def _zones(self, ctx: Ctx) -> dict[str, str]:
        """zone name -> zone id, for the whole account."""
        async def fetch() -> dict[str, str]:
            zones = await ctx.paginate("route53", "list_hosted_zones", "HostedZones", cursor=("Marker", "NextMarker"))
            return {fqdn(z["Name"]): zone_id(z["Id"]) for z in zones}
        zones: dict[str, str] = await ctx.once("route53:zones", fetch)
        return zones

    async def _zone_for(self, ctx: Ctx, decl: AwsDeclaration) -> str:
        p = decl.properties
        if isinstance(p.get("HostedZoneId"), str) and "/HostedZoneId" not in decl.not_checked:
            return zone_id(p["HostedZoneId"])
        zones = await self._zones(ctx)
        if isinstance(p.get("HostedZoneName"), str) and "/HostedZoneName" not in decl.not_checked:
            z = zones.get(fqdn(p["HostedZoneName"]))
            if z:
                return z
            raise TargetError(f"no hosted zone named {p['HostedZoneName']!r}", subject=self.physical_id(decl))
        name = fqdn(str(p.get("Name", "")))
        best = max((z for z in zones if name == z or name.endswith("." + z)), key=len, default=None)
        if best is None:
            raise TargetError(f"no hosted zone holds {name!r}", subject=self.physical_id(decl))
        return zones[best]

    async def _records(self, ctx: Ctx, zid: str) -> list[dict[str, Any]]:
        async def fetch() -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            params: dict[str, Any] = {"HostedZoneId": zid, "MaxItems": "300"}
            while True:
                page = await ctx.call("route53", "list_resource_record_sets", **params)
                out += page.get("ResourceRecordSets") or []
                if not page.get("IsTruncated"):
                    return out
                params["StartRecordName"] = page["NextRecordName"]
                params["StartRecordType"] = page["NextRecordType"]
                if page.get("NextRecordIdentifier"):
                    params["StartRecordIdentifier"] = page["NextRecordIdentifier"]
        records: list[dict[str, Any]] = await ctx.once(f"route53:records:{zid}", fetch)
        return records

    @staticmethod
    def _live(r: Mapping[str, Any]) -> Live:
        live: Live = {"Name": fqdn(r["Name"]), "Type": r["Type"]}
        for k in _SCALARS:
            if r.get(k) is not None:
                live[k] = r[k]
        if r.get("ResourceRecords") is not None:
            live["ResourceRecords"] = [x["Value"] for x in r["ResourceRecords"]]
        if r.get("AliasTarget"):
            live["AliasTarget"] = dict(r["AliasTarget"])
        return live

    async def read(self, ctx: Ctx, decls: Sequence[AwsDeclaration]) -> dict[str, Live]:
        by_pid = {self.physical_id(d): d for d in decls}

        async def one(pid: str) -> Live | None:
            decl = by_pid[pid]
            for r in await self._records(ctx, await self._zone_for(ctx, decl)):
                live = self._live(r)
                rid = f"{live['Name']}:{live['Type']}" + (f":{live['SetIdentifier']}" if live.get("SetIdentifier")
                                                          else "")
                if rid == pid:
                    return live
            return None
        return await per_resource(ctx, self.type_name, by_pid, one)

    def _record(self, props: Mapping[str, Any]) -> dict[str, Any]:
        rec: dict[str, Any] = {"Name": fqdn(props["Name"]), "Type": str(props["Type"]).upper()}
        for k in _SCALARS:
            if props.get(k) is not None:
                rec[k] = int(props[k]) if k in ("TTL", "Weight") else props[k]
        if props.get("ResourceRecords"):
            rec["ResourceRecords"] = [{"Value": str(v)} for v in props["ResourceRecords"]]
        if isinstance(props.get("AliasTarget"), Mapping):
            a = props["AliasTarget"]
            rec["AliasTarget"] = {"HostedZoneId": a["HostedZoneId"], "DNSName": a["DNSName"],
                                  "EvaluateTargetHealth": bool(a.get("EvaluateTargetHealth", False))}
        return rec

    async def _upsert(self, ctx: Ctx, decl: AwsDeclaration) -> None:
        zid = await self._zone_for(ctx, decl)
        change = {"Action": "UPSERT", "ResourceRecordSet": self._record(resolved(decl))}
        await ctx.call("route53", "change_resource_record_sets", HostedZoneId=zid,
                       ChangeBatch={"Comment": "driftd", "Changes": [change]})
        ctx.memo.pop(f"route53:records:{zid}", None)

    async def revert(self, ctx: Ctx, decl: AwsDeclaration, live: Live, changes: Sequence[Change]) -> None:
        await self._upsert(ctx, decl)

    async def create(self, ctx: Ctx, decl: AwsDeclaration) -> None:
        await self._upsert(ctx, decl)
