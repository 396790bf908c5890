"""AWS::IAM::Role as a table: trust policy, inline Policies, ManagedPolicyArns, Description, MaxSessionDuration,
PermissionsBoundary, Tags.

Reads: ListRoles (1,000 a page, carries the trust policy, description and max session duration) when more than
10 roles are declared or unmanaged roles are wanted, else GetRole per role (which also carries tags and the
boundary); then per role only the calls for declared properties (inline policies: ListRolePolicies + one
GetRolePolicy each; managed: ListAttachedRolePolicies; tags: ListRoleTags and the boundary: GetRole, when
ListRoles was used).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ....diff.aws_compare import CompareSpec
from ....diff.aws_policy import normalize_policy, parse_policy, policies_equal, statement_id, with_version
from ....model import AwsDeclaration
from ..base import Ctx, Live
from ..registry import register
from ..spec import Create, ListCall, Lookup, Prop, Read, ReadEach, SpecAdapter, Tags, TypeSpec, Write, kv

LIST_THRESHOLD = 10  # above this many declared roles, one ListRoles beats a GetRole each


def _policy_name(p: Any) -> str:
    return str(p.get("PolicyName")) if isinstance(p, Mapping) else str(p)


def _dump(doc: Any) -> str:
    d = with_version(doc)
    return d if isinstance(d, str) else json.dumps(d)


def _policies(v: Any) -> Any:
    return [{**p, "PolicyDocument": normalize_policy(p.get("PolicyDocument"))} for p in v if isinstance(p, Mapping)] \
        if isinstance(v, list) else v


def _docs(policies: Any) -> dict[str, Any]:
    return {_policy_name(p): p.get("PolicyDocument") for p in policies or [] if isinstance(p, Mapping)}


def _put_policies(live: Live, p: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Inline policies that are new or differ from the live ones."""
    have = _docs(live.get("Policies"))
    return [{"RoleName": live["RoleName"], "PolicyName": n, "PolicyDocument": _dump(doc)}
            for n, doc in _docs(p["Policies"]).items() if n not in have or not policies_equal(doc, have[n])]


def _delete_policies(live: Live, p: Mapping[str, Any]) -> list[dict[str, Any]]:
    want = _docs(p["Policies"])
    return [{"RoleName": live["RoleName"], "PolicyName": n} for n in sorted(_docs(live.get("Policies")).keys() - want)]


def _arns(live: Live, p: Mapping[str, Any], attach: bool) -> list[dict[str, Any]]:
    want, have = set(p["ManagedPolicyArns"] or []), set(live.get("ManagedPolicyArns") or [])
    return [{"RoleName": live["RoleName"], "PolicyArn": a} for a in sorted(want - have if attach else have - want)]


def _update(live: Live, p: Mapping[str, Any]) -> dict[str, Any] | None:
    update = {k: p[k] for k in ("Description", "MaxSessionDuration") if k in live["_changed"] and k in p}
    if "MaxSessionDuration" in update:
        update["MaxSessionDuration"] = int(update["MaxSessionDuration"])
    return {"RoleName": live["RoleName"], **update} if update else None


def _create(name: str, p: Mapping[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    params: dict[str, Any] = {"RoleName": name,
                              "AssumeRolePolicyDocument": _dump(p.get("AssumeRolePolicyDocument") or {})}
    params.update({k: p[k] for k in ("Path", "Description") if isinstance(p.get(k), str)})
    if p.get("MaxSessionDuration") is not None:
        params["MaxSessionDuration"] = int(p["MaxSessionDuration"])
    return {**params, **({"Tags": kv(tags)} if tags else {})}


def _by_role(operation: str, pages: tuple[str, str, str] | None = None, **kw: Any) -> Read:
    return Read(operation, lambda r: {"RoleName": r["RoleName"]}, pages=pages, **kw)


_MARKER = ("Marker", "Marker")


@register
class Role(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::IAM::Role", service="iam", name_property="RoleName", global_service=True,
        list=ListCall("list_roles", "Roles", _MARKER, {"MaxItems": 1000},
                      lookup=Lookup("get_role", lambda names: {"RoleName": names[0]}, "Role", missing=("NoSuchEntity",),
                                    limit=LIST_THRESHOLD)),
        skip_item=lambda r: str(r.get("Path", "/")).startswith("/aws-service-role/"),  # AWS's own
        item_id=lambda r: str(r["RoleName"]),
        ids=lambda r: {"RoleName": r["RoleName"]},
        reads=(_by_role("get_role", result_key="Role", in_lookup=True, absent=("NoSuchEntity",)),  # boundary
               ReadEach(_by_role("list_role_policies", ("PolicyNames", *_MARKER)), "get_role_policy",
                        lambda r, n: {"RoleName": r["RoleName"], "PolicyName": n}),
               _by_role("list_attached_role_policies", ("AttachedPolicies", *_MARKER))),
        props={"Path": Prop("Path", none_is_value=True),
               "AssumeRolePolicyDocument": Prop(lambda r: parse_policy(r.get("AssumeRolePolicyDocument")),
                                                normalize=normalize_policy),
               "Description": Prop("Description", none_is_value=True),
               "MaxSessionDuration": Prop("MaxSessionDuration", none_is_value=True),
               "PermissionsBoundary": Prop(lambda r: (r.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn"),
                                           source=0, none_is_value=True),
               "Policies": Prop(lambda a: [{"PolicyName": p["PolicyName"],
                                            "PolicyDocument": parse_policy(p.get("PolicyDocument"))}
                                           for p in a.get("Items") or []], source=1, normalize=_policies),
               "ManagedPolicyArns": Prop(lambda a: [x["PolicyArn"] for x in a.get("AttachedPolicies") or []],
                                         source=2)},
        tags=Tags(read=_by_role("list_role_tags", ("Tags", *_MARKER)), in_lookup=True,
                  set_op="tag_role", set_params=lambda live, t: {"RoleName": live["RoleName"], "Tags": kv(t)},
                  unset_op="untag_role", unset_params=lambda live, k: {"RoleName": live["RoleName"], "TagKeys": k}),
        compare=CompareSpec(sets={"/Policies": _policy_name, "/Policies/*/PolicyDocument/Statement": statement_id,
                                  "/AssumeRolePolicyDocument/Statement": statement_id, "/ManagedPolicyArns": str},
                            closed=("/Tags",)),
        writes=(Write("update_assume_role_policy", frozenset({"AssumeRolePolicyDocument"}),
                      lambda live, p: {"RoleName": live["RoleName"],
                                       "PolicyDocument": _dump(p["AssumeRolePolicyDocument"])}),
                Write("update_role", frozenset({"Description", "MaxSessionDuration"}), _update),
                Write("put_role_policy", frozenset({"Policies"}), _put_policies),
                Write("delete_role_policy", frozenset({"Policies"}), _delete_policies),
                Write("attach_role_policy", frozenset({"ManagedPolicyArns"}), lambda live, p: _arns(live, p, True)),
                Write("detach_role_policy", frozenset({"ManagedPolicyArns"}), lambda live, p: _arns(live, p, False)),
                Write("put_role_permissions_boundary", frozenset({"PermissionsBoundary"}),
                      lambda live, p: {"RoleName": live["RoleName"], "PermissionsBoundary": p["PermissionsBoundary"]}
                      if p.get("PermissionsBoundary") else None)),
        immutable=frozenset({"Path"}),
        create=Create("create_role", _create,
                      then=(Write("put_role_policy", frozenset({"Policies"}), _put_policies),
                            Write("attach_role_policy", frozenset({"ManagedPolicyArns"}),
                                  lambda live, p: _arns(live, p, True))),
                      id_from=lambda name, a: {"RoleName": name}),
        extra_write_actions=("iam:DeleteRolePermissionsBoundary",),  # restoring a baseline without one
    )
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
                await self.write(ctx, "attach_role_policy", RoleName=name, PolicyArn=arn)
            for arn in sorted(have - want):
                await self.write(ctx, "detach_role_policy", RoleName=name, PolicyArn=arn)
        elif prop == "PermissionsBoundary":
            if value:
                await self.write(ctx, "put_role_permissions_boundary", RoleName=name, PermissionsBoundary=value)
            elif live.get(prop):
                await self.write(ctx, "delete_role_permissions_boundary", RoleName=name)
        elif prop == "Policies":
            want_docs: dict[str, Any] = dict(value or {})
            have_docs = self.baseline_value(prop, live.get(prop) or [])
            for n, doc in want_docs.items():
                if n not in have_docs or not policies_equal(doc, have_docs[n]):
                    await self.write(ctx, "put_role_policy", RoleName=name, PolicyName=n, PolicyDocument=_dump(doc))
            for n in have_docs.keys() - want_docs.keys():
                await self.write(ctx, "delete_role_policy", RoleName=name, PolicyName=n)
        else:
            await super().restore(ctx, decl, live, prop, value)
