"""Tables: AWS::IAM::InstanceProfile, AWS::IAM::ManagedPolicy, AWS::IAM::RolePolicy, AWS::IAM::Policy."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ....diff.aws_compare import CompareSpec
from ....diff.aws_policy import normalize_policy, parse_policy, statement_id, with_version
from ....model import AwsDeclaration
from ..base import ApiError, Ctx, Live, per_resource
from ..registry import register
from ..spec import Create, ListCall, Prop, Read, SpecAdapter, TypeSpec, Write

_DOC_SPEC = CompareSpec(sets={"/PolicyDocument/Statement": statement_id, "/Roles": str, "/Users": str,
                              "/Groups": str})


def _doc(v: Any) -> Any:
    return normalize_policy(parse_policy(v) if isinstance(v, str) else v)


def _dump(doc: Any) -> str:
    d = with_version(doc)
    return d if isinstance(d, str) else json.dumps(d)


def _names(v: Any) -> Any:
    return sorted(str(x) for x in v) if isinstance(v, list) else v


def _delta(want: Any, have: Any) -> tuple[list[str], list[str]]:
    w, h = set(want or []), set(have or [])
    return sorted(w - h), sorted(h - w)


@register
class InstanceProfile(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::IAM::InstanceProfile", service="iam", name_property="InstanceProfileName",
        global_service=True,
        list=ListCall("list_instance_profiles", "InstanceProfiles", ("Marker", "Marker"), {"MaxItems": 1000}),
        item_id=lambda i: str(i["InstanceProfileName"]),
        ids=lambda i: {"InstanceProfileName": i["InstanceProfileName"]},
        props={"Roles": Prop(lambda i: [r["RoleName"] for r in i.get("Roles") or []], normalize=_names),
               "Path": Prop("Path")},
        compare=CompareSpec(sets={"/Roles": str}),
        writes=(Write("add_role_to_instance_profile", frozenset({"Roles"}),
                      lambda live, p: [{"InstanceProfileName": live["InstanceProfileName"], "RoleName": r}
                                       for r in _delta(p["Roles"], live.get("Roles"))[0]]),
                Write("remove_role_from_instance_profile", frozenset({"Roles"}),
                      lambda live, p: [{"InstanceProfileName": live["InstanceProfileName"], "RoleName": r}
                                       for r in _delta(p["Roles"], live.get("Roles"))[1]])),
        immutable=frozenset({"Path"}),
        create=Create("create_instance_profile", lambda name, p, tags: {
            "InstanceProfileName": name, **({"Path": p["Path"]} if p.get("Path") else {})},
            then=(Write("add_role_to_instance_profile", frozenset({"Roles"}),
                        lambda live, p: [{"InstanceProfileName": live["InstanceProfileName"], "RoleName": r}
                                         for r in p["Roles"]]),),
            id_from=lambda name, a: {"InstanceProfileName": name}),
    )


def _entities(a: Mapping[str, Any], key: str, field: str) -> list[str]:
    return [str(e[field]) for e in a.get(key) or []]


def _attach(kind: str, key: str) -> tuple[Write, Write]:
    """Attach/detach calls bringing a managed policy's Roles/Users/Groups to the declared set."""
    arg = {"Roles": "RoleName", "Users": "UserName", "Groups": "GroupName"}[key]
    return (Write(f"attach_{kind}_policy", frozenset({key}),
                  lambda live, p: [{arg: n, "PolicyArn": live["PolicyArn"]} for n in _delta(p[key], live.get(key))[0]]),
            Write(f"detach_{kind}_policy", frozenset({key}),
                  lambda live, p: [{arg: n, "PolicyArn": live["PolicyArn"]}
                                   for n in _delta(p[key], live.get(key))[1]]))


@register
class ManagedPolicy(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::IAM::ManagedPolicy", service="iam", name_property="ManagedPolicyName", global_service=True,
        list=ListCall("list_policies", "Policies", ("Marker", "Marker"), {"Scope": "Local", "MaxItems": 1000}),
        item_id=lambda i: str(i["PolicyName"]),
        ids=lambda i: {"PolicyArn": i["Arn"]},
        reads=(Read("get_policy_version", lambda i: {"PolicyArn": i["Arn"], "VersionId": i["DefaultVersionId"]}),
               Read("list_entities_for_policy", lambda i: {"PolicyArn": i["Arn"]}),
               Read("get_policy", lambda i: {"PolicyArn": i["Arn"]})),
        props={"PolicyDocument": Prop(lambda a: parse_policy((a.get("PolicyVersion") or {}).get("Document")),
                                      source=0, normalize=_doc),
               "Roles": Prop(lambda a: _entities(a, "PolicyRoles", "RoleName"), source=1, normalize=_names),
               "Users": Prop(lambda a: _entities(a, "PolicyUsers", "UserName"), source=1, normalize=_names),
               "Groups": Prop(lambda a: _entities(a, "PolicyGroups", "GroupName"), source=1, normalize=_names),
               "Path": Prop("Path"),
               "Description": Prop(lambda a: (a.get("Policy") or {}).get("Description"), source=2)},
        compare=_DOC_SPEC,
        writes=(Write("create_policy_version", frozenset({"PolicyDocument"}),
                      lambda live, p: {"PolicyArn": live["PolicyArn"], "PolicyDocument": _dump(p["PolicyDocument"]),
                                       "SetAsDefault": True}),
                *_attach("role", "Roles"), *_attach("user", "Users"), *_attach("group", "Groups")),
        immutable=frozenset({"Path", "Description"}),
        create=Create("create_policy", lambda name, p, tags: {
            "PolicyName": name, "PolicyDocument": _dump(p.get("PolicyDocument") or {}),
            **{k: p[k] for k in ("Path", "Description") if p.get(k)}},
            then=(*_attach("role", "Roles")[:1], *_attach("user", "Users")[:1], *_attach("group", "Groups")[:1]),
            id_from=lambda name, a: {"PolicyArn": a["Policy"]["Arn"]}),
    )


async def _inline(ctx: Ctx, kind: str, entity: str, policy: str) -> Any:
    """An inline policy's document, or None when the entity has no such policy (or no longer exists)."""
    arg = {"role": "RoleName", "user": "UserName", "group": "GroupName"}[kind]
    try:
        r = await ctx.call("iam", f"get_{kind}_policy", **{arg: entity, "PolicyName": policy})
    except ApiError as e:
        if e.code == "NoSuchEntity":
            return None
        raise
    return parse_policy(r.get("PolicyDocument"))


@register
class RolePolicy(SpecAdapter):
    """An inline role policy as its own resource, identified as ``role/policy``."""

    table = TypeSpec(
        type_name="AWS::IAM::RolePolicy", service="iam", identity="composite", composite=("RoleName", "PolicyName"),
        global_service=True, list=None, supports_unmanaged=False,
        item_id=lambda i: f"{i['RoleName']}/{i['PolicyName']}",
        ids=lambda i: {"RoleName": i["RoleName"], "PolicyName": i["PolicyName"]},
        reads=(Read("get_role_policy", lambda i: {"RoleName": i["RoleName"], "PolicyName": i["PolicyName"]}),),
        props={"PolicyDocument": Prop("PolicyDocument", source=0, normalize=_doc),
               "RoleName": Prop("RoleName"), "PolicyName": Prop("PolicyName")},
        compare=_DOC_SPEC,
        writes=(Write("put_role_policy", frozenset({"PolicyDocument"}),
                      lambda live, p: {"RoleName": live["RoleName"], "PolicyName": live["PolicyName"],
                                       "PolicyDocument": _dump(p["PolicyDocument"])}),),
        create=Create("put_role_policy", lambda name, p, tags: {
            "RoleName": p["RoleName"], "PolicyName": p["PolicyName"],
            "PolicyDocument": _dump(p.get("PolicyDocument") or {})}),
    )

    async def read(self, ctx: Ctx, decls: Sequence[AwsDeclaration]) -> dict[str, Live]:
        async def one(pid: str) -> Live | None:
            role, _, name = pid.partition("/")
            doc = await _inline(ctx, "role", role, name)
            return None if doc is None else {"RoleName": role, "PolicyName": name, "PolicyDocument": doc,
                                             "_id": pid}
        return await per_resource(ctx, self.type_name, {self.physical_id(d) for d in decls}, one)


_KINDS = (("Roles", "role"), ("Users", "user"), ("Groups", "group"))


def _put_inline(key: str, kind: str) -> Write:
    """Put the declared document on each of the policy's Roles (Users, Groups)."""
    def params(live: Live, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [{f"{kind.capitalize()}Name": n, "PolicyName": live["PolicyName"],
                 "PolicyDocument": _dump(p.get("PolicyDocument") or {})} for n in p.get(key) or []]
    return Write(f"put_{kind}_policy", frozenset({key, "PolicyDocument"}), params)


@register
class Policy(SpecAdapter):
    """An inline policy put on each of its Roles, Users and Groups. Reads the entities the template names:
    the policy missing from one of them is a removed element; its document differing on any is reported."""

    table = TypeSpec(
        type_name="AWS::IAM::Policy", service="iam", name_property="PolicyName", global_service=True, list=None,
        supports_unmanaged=False,
        item_id=lambda i: str(i["PolicyName"]), ids=lambda i: {},
        reads=(Read("get_role_policy", lambda i: {}), Read("get_user_policy", lambda i: {}),
               Read("get_group_policy", lambda i: {})),
        props={"PolicyDocument": Prop("PolicyDocument", normalize=_doc),
               "Roles": Prop("Roles", normalize=_names), "Users": Prop("Users", normalize=_names),
               "Groups": Prop("Groups", normalize=_names)},
        compare=_DOC_SPEC,
        writes=tuple(_put_inline(key, kind) for key, kind in _KINDS),
        create=Create("put_role_policy", lambda name, p, tags: {}),
    )

    async def read(self, ctx: Ctx, decls: Sequence[AwsDeclaration]) -> dict[str, Live]:
        by_pid = {self.physical_id(d): d for d in decls}

        async def one(pid: str) -> Live | None:
            d = by_pid[pid]
            want = _doc(d.properties.get("PolicyDocument"))
            live: Live = {"PolicyName": pid, "_id": pid}
            found = False
            for key, kind in _KINDS:
                names = d.properties.get(key)
                if not isinstance(names, list):
                    continue
                have = []
                for n in names:
                    doc = await _inline(ctx, kind, str(n), pid)
                    if doc is None:
                        continue
                    have.append(str(n))
                    found = True
                    if "PolicyDocument" not in live or _doc(doc) != want:
                        live["PolicyDocument"] = doc  # the first that differs is what is reported
                live[key] = have
            return live if found else None
        return await per_resource(ctx, self.type_name, by_pid, one)

    async def create(self, ctx: Ctx, decl: AwsDeclaration) -> None:
        from ..base import resolved

        props = resolved(decl)
        for w in self.table.writes:
            await self._apply(ctx, w, {"PolicyName": self.physical_id(decl)}, props)
