"""AWS::IAM::Role: trust policy, inline Policies, ManagedPolicyArns, Description, MaxSessionDuration, Tags.

Reads: ListRoles (1,000 a page, carries the trust policy, description and max
session duration) when many roles are declared or unmanaged roles are wanted,
else GetRole per role; then per role only the calls for declared properties
(inline policies: ListRolePolicies + one GetRolePolicy each; managed:
ListAttachedRolePolicies; tags: ListRoleTags when ListRoles was used).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ....diff.aws_compare import CompareSpec, tags_to_map
from ....diff.aws_policy import normalize_policy, parse_policy, policies_equal, statement_id, with_version
from ....errors import TargetError
from ....model import AwsDeclaration, Change
from ..base import Adapter, ApiError, Ctx, Live, changed_top, kv_tags, per_resource, resolved, tag_delta
from ..registry import register

LIST_THRESHOLD = 10  # above this many declared roles, one ListRoles beats a GetRole each


def _policy_name(p: Any) -> str:
    return str(p.get("PolicyName")) if isinstance(p, Mapping) else str(p)


def _dump(doc: Any) -> str:
    d = with_version(doc)
    return d if isinstance(d, str) else json.dumps(d)


@register
class Role(Adapter):
    type_name = "AWS::IAM::Role"
    service = "iam"
    name_property = "RoleName"
    properties = frozenset({"RoleName", "Path", "AssumeRolePolicyDocument", "Description", "MaxSessionDuration",
                            "Tags", "Policies", "ManagedPolicyArns", "PermissionsBoundary"})
    global_service = True
    read_permissions = ("iam:ListRoles", "iam:GetRole", "iam:ListRolePolicies", "iam:GetRolePolicy",
                        "iam:ListAttachedRolePolicies", "iam:ListRoleTags")
    revert_permissions = ("iam:CreateRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRole", "iam:PutRolePolicy",
                          "iam:DeleteRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:TagRole",
                          "iam:UntagRole", "iam:PutRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary")
    spec = CompareSpec(sets={"/Policies": _policy_name,
                             "/Policies/*/PolicyDocument/Statement": statement_id,
                             "/AssumeRolePolicyDocument/Statement": statement_id,
                             "/ManagedPolicyArns": str},
                       closed=("/Tags",))
    baseline_properties = ("ManagedPolicyArns", "PermissionsBoundary", "Policies")
    restorable = frozenset(baseline_properties)

    def baseline_value(self, prop: str, value: Any) -> Any:
        if prop == "Policies" and isinstance(value, list):  # inline policies by name, documents normalized
            return {_policy_name(p): normalize_policy(p.get("PolicyDocument")) for p in value
                    if isinstance(p, Mapping)}
        return super().baseline_value(prop, value)

    async def restore(self, ctx: Ctx, decl: AwsDeclaration, live: Live, prop: str, value: Any) -> None:
        name = self.physical_id(decl)
        if prop == "ManagedPolicyArns":
            want, have = set(value or []), set(live.get(prop) or [])
            for arn in sorted(want - have):
                await ctx.call("iam", "attach_role_policy", RoleName=name, PolicyArn=arn)
            for arn in sorted(have - want):
                await ctx.call("iam", "detach_role_policy", RoleName=name, PolicyArn=arn)
        elif prop == "PermissionsBoundary":
            if value:
                await ctx.call("iam", "put_role_permissions_boundary", RoleName=name, PermissionsBoundary=value)
            elif live.get(prop):
                await ctx.call("iam", "delete_role_permissions_boundary", RoleName=name)
        elif prop == "Policies":
            want_docs: dict[str, Any] = dict(value or {})
            have_docs = self.baseline_value(prop, live.get(prop) or [])
            for n, doc in want_docs.items():
                if n not in have_docs or not policies_equal(doc, have_docs[n]):
                    await ctx.call("iam", "put_role_policy", RoleName=name, PolicyName=n, PolicyDocument=_dump(doc))
            for n in have_docs.keys() - want_docs.keys():
                await ctx.call("iam", "delete_role_policy", RoleName=name, PolicyName=n)
        else:
            await super().restore(ctx, decl, live, prop, value)

    def normalize(self, props: Mapping[str, Any]) -> dict[str, Any]:
        out = super().normalize(props)
        if "AssumeRolePolicyDocument" in out:
            out["AssumeRolePolicyDocument"] = normalize_policy(out["AssumeRolePolicyDocument"])
        if isinstance(out.get("Policies"), list):
            out["Policies"] = [{**p, "PolicyDocument": normalize_policy(p.get("PolicyDocument"))}
                               for p in out["Policies"] if isinstance(p, Mapping)]
        return out

    async def _list(self, ctx: Ctx) -> list[dict[str, Any]]:
        async def fetch() -> list[dict[str, Any]]:
            return await ctx.paginate("iam", "list_roles", "Roles", cursor=("Marker", "Marker"),
                                      MaxItems=1000)
        roles: list[dict[str, Any]] = await ctx.once("iam:roles", fetch)
        return roles

    @staticmethod
    def _base(r: Mapping[str, Any]) -> Live:
        live: Live = {"RoleName": r["RoleName"], "Path": r.get("Path"), "Arn": r.get("Arn"),
                      "AssumeRolePolicyDocument": parse_policy(r.get("AssumeRolePolicyDocument")),
                      "Description": r.get("Description"), "MaxSessionDuration": r.get("MaxSessionDuration")}
        if "Tags" in r:
            live["Tags"] = r.get("Tags") or []
        return live

    async def _get(self, ctx: Ctx, name: str) -> Live | None:
        try:
            r = await ctx.call("iam", "get_role", RoleName=name)
        except ApiError as e:
            if e.code == "NoSuchEntity":
                return None
            raise
        live = self._base(r["Role"])
        live.setdefault("Tags", [])
        pb = r["Role"].get("PermissionsBoundary") or {}
        live["PermissionsBoundary"] = pb.get("PermissionsBoundaryArn")
        return live

    async def _extras(self, ctx: Ctx, live: Live, props: set[str]) -> Live:
        name = live["RoleName"]
        if "Policies" in props:
            names = await ctx.paginate("iam", "list_role_policies", "PolicyNames", cursor=("Marker", "Marker"),
                                       RoleName=name)
            docs = []
            for n in names:
                p = await ctx.call("iam", "get_role_policy", RoleName=name, PolicyName=n)
                docs.append({"PolicyName": n, "PolicyDocument": parse_policy(p.get("PolicyDocument"))})
            live["Policies"] = docs
        if "ManagedPolicyArns" in props:
            att = await ctx.paginate("iam", "list_attached_role_policies", "AttachedPolicies",
                                     cursor=("Marker", "Marker"),
                                     RoleName=name)
            live["ManagedPolicyArns"] = [a["PolicyArn"] for a in att]
        if "PermissionsBoundary" in props and "PermissionsBoundary" not in live:
            # ListRoles leaves the boundary out: GetRole has it.
            got = await self._get(ctx, name)
            live["PermissionsBoundary"] = (got or {}).get("PermissionsBoundary")
        if "Tags" in props and "Tags" not in live:
            live["Tags"] = await ctx.paginate("iam", "list_role_tags", "Tags", cursor=("Marker", "Marker"),
                                              RoleName=name)
        return live

    async def read(self, ctx: Ctx, decls: Sequence[AwsDeclaration]) -> dict[str, Live]:
        props = self.declared(decls, ctx)
        pids = {self.physical_id(d) for d in decls}
        if ctx.unmanaged or len(pids) > LIST_THRESHOLD:
            by_name = {r["RoleName"]: r for r in await self._list(ctx)}

            async def one(name: str) -> Live | None:
                r = by_name.get(name)
                return None if r is None else await self._extras(ctx, self._base(r), props)
        else:
            async def one(name: str) -> Live | None:
                live = await self._get(ctx, name)
                return None if live is None else await self._extras(ctx, live, props)
        return await per_resource(ctx, self.type_name, pids, one)

    async def list_all(self, ctx: Ctx) -> dict[str, Mapping[str, str]]:
        roles = [r for r in await self._list(ctx) if not str(r.get("Path", "/")).startswith("/aws-service-role/")]
        if not ctx.tag_filter:
            return {r["RoleName"]: {} for r in roles}
        tagged = await per_resource(ctx, self.type_name, [r["RoleName"] for r in roles],
                                    lambda n: self._extras(ctx, {"RoleName": n}, {"Tags"}))
        return {n: tags_to_map(v.get("Tags")) for n, v in tagged.items()}

    async def revert(self, ctx: Ctx, decl: AwsDeclaration, live: Live, changes: Sequence[Change]) -> None:
        top = changed_top(changes)
        props = resolved(decl)
        name = self.physical_id(decl)
        if "Path" in top:
            raise TargetError("Path cannot change without replacing the role", subject=name)
        if "AssumeRolePolicyDocument" in top and "AssumeRolePolicyDocument" in props:
            await ctx.call("iam", "update_assume_role_policy", RoleName=name,
                           PolicyDocument=_dump(props["AssumeRolePolicyDocument"]))
        update = {k: props[k] for k in ("Description", "MaxSessionDuration") if k in top and k in props}
        if "MaxSessionDuration" in update:
            update["MaxSessionDuration"] = int(update["MaxSessionDuration"])
        if update:
            await ctx.call("iam", "update_role", RoleName=name, **update)
        if "Policies" in top and isinstance(props.get("Policies"), list):
            want = {_policy_name(p): p.get("PolicyDocument") for p in props["Policies"]}
            have = {_policy_name(p): p.get("PolicyDocument") for p in live.get("Policies") or []}
            for n, doc in want.items():
                if n not in have or not policies_equal(doc, have[n]):
                    await ctx.call("iam", "put_role_policy", RoleName=name, PolicyName=n, PolicyDocument=_dump(doc))
            for n in have.keys() - want.keys():
                await ctx.call("iam", "delete_role_policy", RoleName=name, PolicyName=n)
        if "ManagedPolicyArns" in top and isinstance(props.get("ManagedPolicyArns"), list):
            want_arns, have_arns = set(props["ManagedPolicyArns"]), set(live.get("ManagedPolicyArns") or [])
            for arn in sorted(want_arns - have_arns):
                await ctx.call("iam", "attach_role_policy", RoleName=name, PolicyArn=arn)
            for arn in sorted(have_arns - want_arns):
                await ctx.call("iam", "detach_role_policy", RoleName=name, PolicyArn=arn)
        if "PermissionsBoundary" in top:
            await self.restore(ctx, decl, live, "PermissionsBoundary", props.get("PermissionsBoundary"))
        if "Tags" in top:
            to_set, to_remove = tag_delta(decl, live.get("Tags"), ctx)
            if to_set:
                await ctx.call("iam", "tag_role", RoleName=name, Tags=kv_tags(to_set))
            if to_remove:
                await ctx.call("iam", "untag_role", RoleName=name, TagKeys=to_remove)

    async def create(self, ctx: Ctx, decl: AwsDeclaration) -> None:
        props = resolved(decl)
        name = self.physical_id(decl)
        params: dict[str, Any] = {"RoleName": name,
                                  "AssumeRolePolicyDocument": _dump(props.get("AssumeRolePolicyDocument") or {})}
        for k in ("Path", "Description"):
            if isinstance(props.get(k), str):
                params[k] = props[k]
        if props.get("MaxSessionDuration") is not None:
            params["MaxSessionDuration"] = int(props["MaxSessionDuration"])
        tags = dict(ctx.tag_filter)
        tags.update(tags_to_map(props.get("Tags")))
        if tags:
            params["Tags"] = kv_tags(tags)
        await ctx.call("iam", "create_role", **params)
        ctx.memo.pop("iam:roles", None)
        for p in props.get("Policies") or []:
            await ctx.call("iam", "put_role_policy", RoleName=name, PolicyName=_policy_name(p),
                           PolicyDocument=_dump(p.get("PolicyDocument")))
        for arn in props.get("ManagedPolicyArns") or []:
            await ctx.call("iam", "attach_role_policy", RoleName=name, PolicyArn=arn)
