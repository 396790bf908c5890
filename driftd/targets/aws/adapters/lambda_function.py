"""AWS::Lambda::Function as a table, configuration only (code is an artifact, not configuration).

Runtime, Handler, MemorySize, Timeout, Environment (variables a closed map: one added out of band is drift),
Role, Description, TracingConfig, Layers, Tags. Reads: ListFunctions (50 a page) when more than 10 are declared
or unmanaged functions are wanted, else GetFunctionConfiguration each; ListTags / GetFunctionUrlConfig per
function only when tags / the URL baseline are wanted. Revert: one UpdateFunctionConfiguration carrying only the
drifted settings, one tag call each way.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

from ....diff.aws_compare import CompareSpec
from ....model import AwsDeclaration
from ..base import Ctx, Live
from ..registry import register
from ..spec import Create, ListCall, Lookup, Prop, Read, SpecAdapter, Tags, TypeSpec, Write

_CONFIG = ("Runtime", "Handler", "MemorySize", "Timeout", "Role", "Description", "Environment", "TracingConfig",
           "Layers", "EphemeralStorage")
_INT = ("MemorySize", "Timeout")
LIST_THRESHOLD = 10


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


def _update(live: Live, p: Mapping[str, Any]) -> dict[str, Any] | None:
    cfg = _config(p, live["_changed"])  # only what drifted
    return {"FunctionName": live["FunctionName"], **cfg} if cfg else None


def _create(name: str, p: Mapping[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    params = _config(p, _CONFIG)
    params["FunctionName"] = name
    params["Code"] = _code(p.get("Code") or {}, str(p.get("Runtime", "")))
    if p.get("Architectures"):
        params["Architectures"] = list(p["Architectures"])
    if p.get("PackageType"):
        params["PackageType"] = p["PackageType"]
    if tags:
        params["Tags"] = tags
    return params


@register
class Function(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::Lambda::Function", service="lambda", name_property="FunctionName",
        list=ListCall("list_functions", "Functions", ("Marker", "NextMarker"), {"MaxItems": 50},
                      lookup=Lookup("get_function_configuration", lambda names: {"FunctionName": names[0]},
                                    missing=("ResourceNotFoundException",), limit=LIST_THRESHOLD)),
        item_id=lambda f: str(f["FunctionName"]),
        ids=lambda f: {"FunctionName": f["FunctionName"], "FunctionArn": f["FunctionArn"]},
        reads=(Read("get_function_url_config", lambda f: {"FunctionName": f["FunctionName"]},
                    absent=("ResourceNotFoundException",)),),
        props={**{k: Prop(k) for k in ("Runtime", "Handler", "MemorySize", "Timeout", "Role", "Description",
                                       "CodeSha256")},
               "Environment": Prop(lambda f: {"Variables": dict((f.get("Environment") or {}).get("Variables") or {})}),
               "TracingConfig": Prop(lambda f: {"Mode": f["TracingConfig"].get("Mode")} if f.get("TracingConfig")
                                     else None),
               "Layers": Prop(lambda f: [x["Arn"] for x in f.get("Layers") or []]),
               "Architectures": Prop(lambda f: list(f.get("Architectures") or [])),
               "EphemeralStorage": Prop(lambda f: dict(f["EphemeralStorage"]) if f.get("EphemeralStorage") else None),
               # driftd's name: the function URL's auth type (NONE: public), None without a URL.
               "FunctionUrl": Prop("AuthType", source=0, none_is_value=True)},
        tags=Tags(read=Read("list_tags", lambda f: {"Resource": f["FunctionArn"]}), shape="map",
                  set_op="tag_resource", set_params=lambda live, t: {"Resource": live["FunctionArn"], "Tags": t},
                  unset_op="untag_resource",
                  unset_params=lambda live, k: {"Resource": live["FunctionArn"], "TagKeys": k}),
        compare=CompareSpec(sets={"/Layers": str, "/Architectures": str},
                            closed=("/Tags", "/Environment/Variables"), secret=("/Environment",)),
        writes=(Write("update_function_configuration", frozenset(_CONFIG), _update),),
        create=Create("create_function", _create),
        baseline_only=frozenset({"FunctionUrl", "CodeSha256"}),
        extra_write_actions=("iam:PassRole",),
    )
    # CodeSha256: the deployed code's hash (code is an artifact, never compared with Git): code replaced out of
    # band is drift; a deploy through Git's pipeline re-takes it (driftd baseline).
    baseline_properties = ("Role", "Layers", "FunctionUrl", "CodeSha256")
    restorable = frozenset({"Role", "Layers"})

    async def restore(self, ctx: Ctx, decl: AwsDeclaration, live: Live, prop: str, value: Any) -> None:
        if prop not in self.restorable:
            await super().restore(ctx, decl, live, prop, value)
            return
        await self.write(ctx, "update_function_configuration", FunctionName=self.physical_id(decl),
                         **{prop: list(value or []) if prop == "Layers" else value})
