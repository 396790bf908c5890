"""AWS::Lambda::Function, configuration only (code is an artifact, not configuration).

Runtime, Handler, MemorySize, Timeout, Environment (variables a closed map:
one added out of band is drift), Role, Description, TracingConfig, Layers,
Tags. Reads: ListFunctions (50 a page) when many are declared or unmanaged
functions are wanted, else GetFunctionConfiguration each. Revert: one
UpdateFunctionConfiguration.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

from ....diff.aws_compare import CompareSpec, tags_to_map
from ....model import AwsDeclaration, Change
from ..base import Adapter, ApiError, Ctx, Live, changed_top, per_resource, resolved, tag_delta
from ..registry import register

_CONFIG = ("Runtime", "Handler", "MemorySize", "Timeout", "Role", "Description", "Environment", "TracingConfig",
           "Layers", "EphemeralStorage")
_INT = ("MemorySize", "Timeout")
LIST_THRESHOLD = 10


def _live(f: Mapping[str, Any]) -> Live:
    live: Live = {k: f.get(k) for k in ("FunctionName", "FunctionArn", "Runtime", "Handler", "MemorySize",
                                        "Timeout", "Role", "Description", "CodeSha256")}
    live["Environment"] = {"Variables": dict((f.get("Environment") or {}).get("Variables") or {})}
    if f.get("TracingConfig"):
        live["TracingConfig"] = {"Mode": f["TracingConfig"].get("Mode")}
    live["Layers"] = [x["Arn"] for x in f.get("Layers") or []]
    live["Architectures"] = list(f.get("Architectures") or [])
    if f.get("EphemeralStorage"):
        live["EphemeralStorage"] = dict(f["EphemeralStorage"])
    return live


def _config(props: Mapping[str, Any], keys: set[str] | Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in _CONFIG:
        if k in keys and props.get(k) is not None:
            v = props[k]
            if k in _INT:
                v = int(v)
            elif k == "Environment":
                v = {"Variables": {n: str(x) for n, x in (v.get("Variables") or {}).items()}}
            elif k == "EphemeralStorage":
                v = {"Size": int(v["Size"])}
            out[k] = v
    return out


def _code(code: Mapping[str, Any], runtime: str) -> dict[str, Any]:
    if "ZipFile" in code:  # CloudFormation's inline source: it writes index.<ext> into a zip
        ext = "js" if runtime.startswith("nodejs") else "py"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(f"index.{ext}", str(code["ZipFile"]))
        return {"ZipFile": buf.getvalue()}
    return {k: code[k] for k in ("S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri") if k in code}


@register
class Function(Adapter):
    type_name = "AWS::Lambda::Function"
    service = "lambda"
    name_property = "FunctionName"
    properties = frozenset({"FunctionName", "Runtime", "Handler", "MemorySize", "Timeout", "Role", "Description",
                            "Environment", "TracingConfig", "Layers", "Architectures", "EphemeralStorage", "Tags"})
    read_permissions = ("lambda:ListFunctions", "lambda:GetFunctionConfiguration", "lambda:ListTags",
                        "lambda:GetFunctionUrlConfig")
    revert_permissions = ("lambda:CreateFunction", "lambda:UpdateFunctionConfiguration", "lambda:TagResource",
                          "lambda:UntagResource", "iam:PassRole")
    spec = CompareSpec(sets={"/Layers": str, "/Architectures": str},
                       closed=("/Tags", "/Environment/Variables"), secret=("/Environment",))
    # FunctionUrl is driftd's name: the function URL's auth type (NONE: public), or None without a URL.
    # CodeSha256: the deployed code's hash (code is an artifact, never compared with Git): code replaced out of
    # band is drift; a deploy through Git's pipeline re-takes it (driftd baseline).
    baseline_properties = ("Role", "Layers", "FunctionUrl", "CodeSha256")
    restorable = frozenset({"Role", "Layers"})

    async def restore(self, ctx: Ctx, decl: AwsDeclaration, live: Live, prop: str, value: Any) -> None:
        if prop not in self.restorable:
            await super().restore(ctx, decl, live, prop, value)
            return
        await ctx.call("lambda", "update_function_configuration", FunctionName=self.physical_id(decl),
                       **{prop: list(value or []) if prop == "Layers" else value})

    async def _list(self, ctx: Ctx) -> list[dict[str, Any]]:
        async def fetch() -> list[dict[str, Any]]:
            return await ctx.paginate("lambda", "list_functions", "Functions", cursor=("Marker", "NextMarker"),
                                      MaxItems=50)
        fns: list[dict[str, Any]] = await ctx.once("lambda:functions", fetch)
        return fns

    async def _get(self, ctx: Ctx, name: str) -> Live | None:
        try:
            return _live(await ctx.call("lambda", "get_function_configuration", FunctionName=name))
        except ApiError as e:
            if e.code == "ResourceNotFoundException":
                return None
            raise

    async def read(self, ctx: Ctx, decls: Sequence[AwsDeclaration]) -> dict[str, Live]:
        props = self.declared(decls, ctx)
        names = {self.physical_id(d) for d in decls}
        if ctx.unmanaged or len(names) > LIST_THRESHOLD:
            by_name = {f["FunctionName"]: f for f in await self._list(ctx)}

            async def one(n: str) -> Live | None:
                return _live(by_name[n]) if n in by_name else None
        else:
            async def one(n: str) -> Live | None:
                return await self._get(ctx, n)

        async def with_tags(n: str) -> Live | None:
            live = await one(n)
            if live is not None and "Tags" in props:
                live["Tags"] = (await ctx.call("lambda", "list_tags", Resource=live["FunctionArn"])).get("Tags") or {}
            if live is not None and "FunctionUrl" in props:
                try:
                    url = await ctx.call("lambda", "get_function_url_config", FunctionName=n)
                    live["FunctionUrl"] = url.get("AuthType")  # NONE is public
                except ApiError as e:
                    if e.code != "ResourceNotFoundException":
                        raise
                    live["FunctionUrl"] = None
            return live
        return await per_resource(ctx, self.type_name, names, with_tags)

    async def list_all(self, ctx: Ctx) -> dict[str, Mapping[str, str]]:
        fns = await self._list(ctx)
        if not ctx.tag_filter:
            return {f["FunctionName"]: {} for f in fns}
        arns = {f["FunctionName"]: f["FunctionArn"] for f in fns}

        async def tags(n: str) -> Live:
            return {"Tags": (await ctx.call("lambda", "list_tags", Resource=arns[n])).get("Tags") or {}}
        tagged = await per_resource(ctx, self.type_name, arns, tags)
        return {n: tags_to_map(v.get("Tags")) for n, v in tagged.items()}

    async def revert(self, ctx: Ctx, decl: AwsDeclaration, live: Live, changes: Sequence[Change]) -> None:
        top = changed_top(changes)
        props = resolved(decl)
        name = self.physical_id(decl)
        cfg = _config(props, top)
        if cfg:
            await ctx.call("lambda", "update_function_configuration", FunctionName=name, **cfg)
        if "Tags" in top:
            to_set, to_remove = tag_delta(decl, live.get("Tags"), ctx)
            if to_set:
                await ctx.call("lambda", "tag_resource", Resource=live["FunctionArn"], Tags=to_set)
            if to_remove:
                await ctx.call("lambda", "untag_resource", Resource=live["FunctionArn"], TagKeys=to_remove)

    async def create(self, ctx: Ctx, decl: AwsDeclaration) -> None:
        props = resolved(decl)
        params = _config(props, _CONFIG)
        params["FunctionName"] = self.physical_id(decl)
        params["Code"] = _code(props.get("Code") or {}, str(props.get("Runtime", "")))
        if props.get("Architectures"):
            params["Architectures"] = list(props["Architectures"])
        if props.get("PackageType"):
            params["PackageType"] = props["PackageType"]
        tags = dict(ctx.tag_filter)
        tags.update(tags_to_map(props.get("Tags")))
        if tags:
            params["Tags"] = tags
        await ctx.call("lambda", "create_function", **params)
        ctx.memo.pop("lambda:functions", None)
