"""CloudFormation-shaped AWS declarations -> :class:`~driftd.model.AwsDeclaration`. Pure: bytes in, declarations out.

A template is the familiar shape::

    Parameters: {Name: {Type, Default}}        # Default overridable by environments.aws.parameters
    Conditions: {Name: <condition>}
    Mappings:   {Map: {Key: {Key: value}}}
    Resources:  {LogicalId: {Type, Properties, Metadata, Condition}}

Intrinsic functions are resolved where the template alone decides them: ``Ref``
to parameters and pseudo parameters (``AWS::Region``, ``AWS::AccountId`` when
known, ``AWS::Partition``, ``AWS::URLSuffix``, ``AWS::StackName`` = the
environment's name, ``AWS::NoValue``), ``Ref`` to a resource whose Ref value is
its declared name (a bucket's ``BucketName`` ...), ``Fn::Sub``, ``Fn::Join``,
``Fn::Select``, ``Fn::Split``, ``Fn::If`` with ``Conditions`` (``Fn::Equals``,
``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Condition``), ``Fn::FindInMap``,
``Fn::Base64``, ``Fn::ToJsonString``, ``Fn::Length``; long and short (``!Ref``)
forms.

What needs a deployed stack (``Fn::GetAtt``, ``Fn::ImportValue``,
``Fn::GetAZs``, ``Ref`` to a resource's generated id, SSM-typed parameters or
parameters without Default and without an override) is *not checked*: the
property's JSON pointer (below Properties) goes to ``not_checked`` and the
property is left out, so it can never be reported as drift. A dict key is
dropped alone; a list with an unresolvable element is dropped as a whole
(comparing the rest would be positional nonsense).

Identity: ``Metadata: {"driftd.io/physical-id": ...}``, else the type's name
property (:data:`NAME_PROPERTY`), else the logical id. When the name property
exists but is unresolvable, the key falls back to the logical id, the name
property's pointer is in ``not_checked`` and a warning says so: targets must
then treat the resource's identity as unknown, not as missing.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import DesiredStateError
from ..jsonpointer import escape
from ..model import AwsDeclaration, ResourceKey, TargetKind
from .yamlsafe import DEFAULT_LIMITS, Budget, Document, Limits, load_documents

TEMPLATE_SUFFIXES = (".yaml", ".yml", ".json", ".template")
PHYSICAL_ID_METADATA = "driftd.io/physical-id"

# The property that names a resource, per type (CloudFormation property names).
NAME_PROPERTY: Mapping[str, str] = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::S3::BucketPolicy": "Bucket",
    "AWS::EC2::SecurityGroup": "GroupName",
    "AWS::EC2::LaunchTemplate": "LaunchTemplateName",
    "AWS::EC2::KeyPair": "KeyName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::User": "UserName",
    "AWS::IAM::Group": "GroupName",
    "AWS::IAM::Policy": "PolicyName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
    "AWS::SSM::Parameter": "Name",
    "AWS::AutoScaling::AutoScalingGroup": "AutoScalingGroupName",
    "AWS::AutoScaling::LaunchConfiguration": "LaunchConfigurationName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::ECR::Repository": "RepositoryName",
    "AWS::Route53::RecordSet": "Name",
    "AWS::Route53::HostedZone": "Name",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::KMS::Alias": "AliasName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::ECS::Cluster": "ClusterName",
    "AWS::EKS::Cluster": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::ElasticLoadBalancingV2::LoadBalancer": "Name",
    "AWS::ElasticLoadBalancingV2::TargetGroup": "Name",
    "AWS::RDS::DBInstance": "DBInstanceIdentifier",
    "AWS::RDS::DBCluster": "DBClusterIdentifier",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::Kinesis::Stream": "Name",
    "AWS::ElastiCache::ReplicationGroup": "ReplicationGroupId",
}

# Types whose ``Ref`` returns the declared name, so a Ref to them resolves without a stack.
REF_RETURNS_NAME = frozenset({
    "AWS::S3::Bucket", "AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group", "AWS::IAM::InstanceProfile",
    "AWS::SSM::Parameter", "AWS::AutoScaling::AutoScalingGroup", "AWS::DynamoDB::Table", "AWS::Lambda::Function",
    "AWS::ECR::Repository", "AWS::Logs::LogGroup", "AWS::ECS::Cluster", "AWS::EKS::Cluster",
    "AWS::CloudWatch::Alarm", "AWS::Kinesis::Stream", "AWS::EC2::KeyPair", "AWS::KMS::Alias",
    "AWS::AutoScaling::LaunchConfiguration", "AWS::RDS::DBInstance", "AWS::RDS::DBCluster",
})

# Extra properties that, with the key, identify a resource (two record sets may share a name).
_IDENTITY_EXTRA: Mapping[str, tuple[str, ...]] = {"AWS::Route53::RecordSet": ("Type", "SetIdentifier")}

_SSM_PARAM_TYPE = "AWS::SSM::Parameter::Value<"


def is_template_path(path: str) -> bool:
    return path.endswith(TEMPLATE_SUFFIXES) and not any(p.startswith(".") for p in path.split("/"))


@dataclass(frozen=True)
class Context:
    """What an environment contributes to resolution."""

    region: str
    account_id: str = ""  # empty: unknown (``driftd validate`` offline); Refs to it are not checked
    stack_name: str = ""  # AWS::StackName: the environment's name
    parameters: Mapping[str, str] = field(default_factory=dict)
    supported_types: frozenset[str] | None = None  # None: do not warn about types

    @property
    def partition(self) -> str:
        if self.region.startswith("cn-"):
            return "aws-cn"
        if self.region.startswith("us-gov-"):
            return "aws-us-gov"
        return "aws"


@dataclass(frozen=True)
class TemplateResult:
    declarations: tuple[AwsDeclaration, ...] = ()
    errors: tuple[DesiredStateError, ...] = ()
    warnings: tuple[str, ...] = ()


def parse_template_documents(data: bytes, file: str, limits: Limits = DEFAULT_LIMITS,
                             budget: Budget | None = None) -> list[Document]:
    """The template's documents with key locations (raises DesiredStateError). Cacheable by blob."""
    return load_documents(data, file, cloudformation=True, mark_depth=3, limits=limits, budget=budget)


def declarations_from_template(docs: Sequence[Document], file: str, ctx: Context) -> TemplateResult:
    """Resolve one template file. Per-resource problems become errors; the other resources still resolve."""
    errors: list[DesiredStateError] = []
    warnings: list[str] = []
    decls: list[AwsDeclaration] = []
    non_empty = [d for d in docs if d.value is not None]
    if not non_empty:
        return TemplateResult()
    if len(non_empty) > 1:
        d = non_empty[1]
        return TemplateResult(errors=(DesiredStateError(
            "a template file holds one document; found several", file=file, line=d.line, column=d.column),))
    doc = non_empty[0]
    t = doc.value
    if not isinstance(t, Mapping):
        return TemplateResult(errors=(DesiredStateError(
            f"expected a CloudFormation template (a mapping with Resources), found {type(t).__name__}",
            file=file, line=doc.line, column=doc.column),))
    resources = t.get("Resources")
    if not isinstance(resources, Mapping):
        line, col = doc.where("Resources")
        msg = "Resources is missing" if resources is None else "Resources must be a mapping"
        return TemplateResult(errors=(DesiredStateError(msg, file=file, line=line, column=col),))
    if "Transform" in t:
        warnings.append(f"{file}: Transform {t['Transform']!r} is not applied by driftd; "
                        "resources it would generate are not checked")
    r = _Resolver(t, file, doc, ctx, warnings)
    for param in ctx.parameters:
        if param not in r.params_decl:
            warnings.append(f"{file}: environments.aws.parameters.{param} matches no parameter of this template")
    for logical_id, res in resources.items():
        line, col = doc.where("Resources", str(logical_id))
        try:
            decl = r.resource(str(logical_id), res)
        except _TemplateError as e:
            l2, c2 = doc.where("Resources", str(logical_id), *e.path) if e.path else (line, col)
            errors.append(DesiredStateError(f"resource {logical_id}: {e}", file=file, line=l2, column=c2))
            continue
        if decl is not None:
            decls.append(decl)
    return TemplateResult(tuple(decls), tuple(errors), tuple(warnings))


def parse_template(data: bytes, file: str, ctx: Context, limits: Limits = DEFAULT_LIMITS) -> TemplateResult:
    """Bytes of one template -> its declarations (convenience for tests and ``driftd validate``)."""
    try:
        docs = parse_template_documents(data, file, limits)
    except DesiredStateError as e:
        return TemplateResult(errors=(e,))
    return declarations_from_template(docs, file, ctx)


def check_duplicates(decls: Sequence[AwsDeclaration]) -> list[DesiredStateError]:
    """The same AWS resource declared twice (in one file or two): one error per repeat, naming both."""
    seen: dict[tuple[Any, ...], AwsDeclaration] = {}
    errors = []
    for d in decls:
        extra = tuple(json.dumps(d.properties.get(p), sort_keys=True) for p in _IDENTITY_EXTRA.get(d.type, ()))
        ident = (d.key, extra)
        if ident in seen:
            first = seen[ident]
            errors.append(DesiredStateError(
                f"{d.type} {d.key.name} is declared twice: {d.logical_id} here and "
                f"{first.logical_id} in {first.source}", file=d.source))
        else:
            seen[ident] = d
    return errors


# --- resolution ----------------------------------------------------------------------------------


class _TemplateError(Exception):
    """The template is wrong (not merely unresolvable). ``path`` locates it below the resource."""

    def __init__(self, message: str, path: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class _Unresolved:
    reason: str


_NO_VALUE = object()
_SUB_RE = re.compile(r"\$\{([^}]*)\}")


class _Resolver:
    def __init__(self, t: Mapping[str, Any], file: str, doc: Document, ctx: Context, warnings: list[str]) -> None:
        self.t, self.file, self.doc, self.ctx, self.warnings = t, file, doc, ctx, warnings
        self.resources: Mapping[str, Any] = t.get("Resources") or {}
        self.params_decl: Mapping[str, Any] = t.get("Parameters") or {}
        self.conditions: Mapping[str, Any] = t.get("Conditions") or {}
        self.mappings: Mapping[str, Any] = t.get("Mappings") or {}
        self._cond_memo: dict[str, bool | None] = {}
        self._cond_active: set[str] = set()
        self._name_memo: dict[str, Any] = {}
        self.params = {n: self._param(n, p) for n, p in self.params_decl.items()} \
            if isinstance(self.params_decl, Mapping) else {}

    # parameters and pseudo parameters

    def _param(self, name: str, p: Any) -> Any:
        ptype = str(p.get("Type", "String")) if isinstance(p, Mapping) else "String"
        is_list = ptype.startswith("List<") or ptype == "CommaDelimitedList"
        if name in self.ctx.parameters:
            v: Any = self.ctx.parameters[name]
            if is_list:
                return [x.strip() for x in str(v).split(",")]
            if ptype == "Number":
                try:
                    return int(v) if re.fullmatch(r"-?\d+", str(v)) else float(v)
                except ValueError:
                    return v
            return v
        if ptype.startswith(_SSM_PARAM_TYPE):
            return _Unresolved(f"parameter {name} is read from SSM at deploy time")
        if not isinstance(p, Mapping) or "Default" not in p:
            self.warnings.append(
                f"{self.file}: parameter {name} has no Default and no value in environments.aws.parameters: "
                "properties that use it are not checked")
            return _Unresolved(f"parameter {name} has no value")
        d = p["Default"]
        if is_list and isinstance(d, str):
            return [x.strip() for x in d.split(",")]
        return d

    def _pseudo(self, name: str) -> Any:
        c = self.ctx
        values: dict[str, Any] = {
            "AWS::Region": c.region,
            "AWS::AccountId": c.account_id or _Unresolved("the account id is not known"),
            "AWS::Partition": c.partition,
            "AWS::URLSuffix": "amazonaws.com.cn" if c.partition == "aws-cn" else "amazonaws.com",
            "AWS::StackName": c.stack_name or _Unresolved("no stack name"),
            "AWS::StackId": _Unresolved("AWS::StackId exists only for a deployed stack"),
            "AWS::NotificationARNs": _Unresolved("AWS::NotificationARNs exists only for a deployed stack"),
            "AWS::NoValue": _NO_VALUE,
        }
        if name not in values:
            raise _TemplateError(f"unknown pseudo parameter {name}")
        return values[name]

    def ref(self, name: Any) -> Any:
        if not isinstance(name, str):
            raise _TemplateError(f"Ref expects a name, found {name!r}")
        if name.startswith("AWS::"):
            return self._pseudo(name)
        if name in self.params:
            return self.params[name]
        if name in self.resources:
            res = self.resources[name]
            rtype = res.get("Type") if isinstance(res, Mapping) else None
            if rtype in REF_RETURNS_NAME:
                v = self._declared_name(name, res)
                if v is not None:
                    return v
            return _Unresolved(f"Ref to resource {name} needs the deployed stack")
        raise _TemplateError(f"Ref to {name!r}, which is neither a parameter nor a resource")

    def _declared_name(self, logical_id: str, res: Mapping[str, Any]) -> Any:
        if logical_id not in self._name_memo:
            self._name_memo[logical_id] = None  # guards against Ref cycles
            prop = NAME_PROPERTY.get(str(res.get("Type")))
            props = res.get("Properties") or {}
            if prop and isinstance(props, Mapping) and prop in props:
                v = self.value(props[prop])
                self._name_memo[logical_id] = v if isinstance(v, (str, _Unresolved)) else None
        return self._name_memo[logical_id]

    # conditions: True, False or None (undecidable)

    def condition(self, name: Any) -> bool | None:
        if not isinstance(name, str) or name not in self.conditions:
            raise _TemplateError(f"unknown condition {name!r}")
        if name in self._cond_memo:
            return self._cond_memo[name]
        if name in self._cond_active:
            raise _TemplateError(f"condition {name} refers to itself")
        self._cond_active.add(name)
        try:
            v = self._cond_expr(self.conditions[name])
        finally:
            self._cond_active.discard(name)
        self._cond_memo[name] = v
        return v

    def _cond_expr(self, e: Any) -> bool | None:
        if isinstance(e, Mapping) and len(e) == 1:
            (fn, arg), = e.items()
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::Equals":
                if not (isinstance(arg, list) and len(arg) == 2):
                    raise _TemplateError("Fn::Equals expects [value, value]")
                a, b = self.value(arg[0]), self.value(arg[1])
                if isinstance(a, _Unresolved) or isinstance(b, _Unresolved):
                    return None
                return _scalar_str(a) == _scalar_str(b)
            if fn in ("Fn::Not", "Fn::And", "Fn::Or"):
                if not isinstance(arg, list) or not arg:
                    raise _TemplateError(f"{fn} expects a list of conditions")
                vals = [self._cond_expr(x) for x in arg]
                if fn == "Fn::Not":
                    return None if vals[0] is None else not vals[0]
                if fn == "Fn::And":
                    return False if False in vals else (None if None in vals else True)
                return True if True in vals else (None if None in vals else False)
        if isinstance(e, bool):
            return e
        raise _TemplateError(f"expected a condition (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition), found {e!r}")

    # values

    def value(self, v: Any) -> Any:
        """Fully resolved value, or _Unresolved if anything inside needs a stack. NoValue drops."""
        if isinstance(v, Mapping):
            fn = _intrinsic(v)
            if fn is not None:
                return self._fn(fn, v[fn])
            out: dict[str, Any] = {}
            for k, x in v.items():
                r = self.value(x)
                if isinstance(r, _Unresolved):
                    return r
                if r is not _NO_VALUE:
                    out[k] = r
            return out
        if isinstance(v, list):
            items = []
            for x in v:
                r = self.value(x)
                if isinstance(r, _Unresolved):
                    return r
                if r is not _NO_VALUE:
                    items.append(r)
            return items
        return v

    def properties(self, v: Any, ptr: str, notes: list[str]) -> Any:
        """Like value(), but an unresolvable dict member is dropped and noted instead of spoiling its parent."""
        if isinstance(v, Mapping) and _intrinsic(v) is None:
            out: dict[str, Any] = {}
            for k, x in v.items():
                p = f"{ptr}/{escape(str(k))}"
                r = self.properties(x, p, notes)
                if isinstance(r, _Unresolved):
                    notes.append(p)
                elif r is not _NO_VALUE:
                    out[k] = r
            return out
        if isinstance(v, list):
            local: list[str] = []
            items = []
            for i, x in enumerate(v):
                r = self.properties(x, f"{ptr}/{i}", local)
                if isinstance(r, _Unresolved):
                    return r  # the whole list is not checked; the caller notes its pointer
                if r is not _NO_VALUE:
                    items.append(r)
            notes.extend(local)
            return items
        return self.value(v)

    def _fn(self, fn: str, arg: Any) -> Any:
        if fn == "Ref":
            return self.ref(arg)
        if fn in ("Fn::GetAtt", "Fn::ImportValue", "Fn::GetAZs", "Fn::Cidr", "Fn::Transform"):
            return _Unresolved(f"{fn} needs the deployed stack")
        if fn == "Fn::Sub":
            return self._sub(arg)
        if fn == "Fn::If":
            if not (isinstance(arg, list) and len(arg) == 3):
                raise _TemplateError("Fn::If expects [condition, value if true, value if false]")
            c = self.condition(arg[0])
            if c is None:
                return _Unresolved(f"condition {arg[0]} is undecidable without a stack")
            return self.value(arg[1] if c else arg[2])
        args = self.value(arg)
        if isinstance(args, _Unresolved):
            return args
        if fn == "Fn::Join":
            if not (isinstance(args, list) and len(args) == 2 and isinstance(args[0], str)
                    and isinstance(args[1], list)):
                raise _TemplateError("Fn::Join expects [delimiter, [values]]")
            return args[0].join(_scalar_str(x) for x in args[1])
        if fn == "Fn::Select":
            if not (isinstance(args, list) and len(args) == 2 and isinstance(args[1], list)):
                raise _TemplateError("Fn::Select expects [index, [values]]")
            try:
                return args[1][int(args[0])]
            except (ValueError, IndexError, TypeError):
                raise _TemplateError(f"Fn::Select index {args[0]!r} is out of range") from None
        if fn == "Fn::Split":
            if not (isinstance(args, list) and len(args) == 2 and all(isinstance(x, str) for x in args)):
                raise _TemplateError("Fn::Split expects [delimiter, string]")
            return args[1].split(args[0])
        if fn == "Fn::Base64":
            return base64.b64encode(_scalar_str(args).encode()).decode()
        if fn == "Fn::FindInMap":
            if not (isinstance(args, list) and len(args) in (3, 4)):
                raise _TemplateError("Fn::FindInMap expects [map, top-level key, second-level key]")
            try:
                return self.mappings[args[0]][_scalar_str(args[1])][_scalar_str(args[2])]
            except (KeyError, TypeError):
                if len(args) == 4 and isinstance(args[3], Mapping) and "DefaultValue" in args[3]:
                    return args[3]["DefaultValue"]
                raise _TemplateError(f"Fn::FindInMap: no {args[0]}/{args[1]}/{args[2]} in Mappings") from None
        if fn == "Fn::ToJsonString":
            return json.dumps(args, separators=(",", ":"))
        if fn == "Fn::Length":
            if not isinstance(args, list):
                raise _TemplateError("Fn::Length expects a list")
            return len(args)
        raise _TemplateError(f"unknown intrinsic function {fn}")

    def _sub(self, arg: Any) -> Any:
        if isinstance(arg, str):
            text, variables = arg, {}
        elif isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str) and isinstance(arg[1], Mapping):
            text, variables = arg[0], dict(arg[1])
        else:
            raise _TemplateError("Fn::Sub expects a string or [string, {variables}]")
        unresolved: list[_Unresolved] = []

        def one(m: re.Match[str]) -> str:
            name = m.group(1).strip()
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                v = self.value(variables[name])
            elif "." in name and not name.startswith("AWS::"):
                v = _Unresolved(f"${{{name}}} is an attribute of a deployed resource")
            else:
                v = self.ref(name)
            if isinstance(v, _Unresolved):
                unresolved.append(v)
                return ""
            return _scalar_str(v)

        out = _SUB_RE.sub(one, text)
        return unresolved[0] if unresolved else out

    # resources

    def resource(self, logical_id: str, res: Any) -> AwsDeclaration | None:
        if not isinstance(res, Mapping):
            raise _TemplateError("expected a mapping with Type and Properties")
        rtype = res.get("Type")
        if not isinstance(rtype, str) or not rtype:
            raise _TemplateError("Type is missing" if rtype is None else "Type must be a string", ("Type",))
        if "Condition" in res:
            c = self.condition(res["Condition"])
            if c is False:
                return None
            if c is None:
                self.warnings.append(f"{self.file}: {logical_id} depends on condition {res['Condition']}, which "
                                     "cannot be decided without a stack: not checked")
                return None
        raw_props = res.get("Properties") or {}
        if not isinstance(raw_props, Mapping):
            raise _TemplateError("Properties must be a mapping", ("Properties",))
        meta = res.get("Metadata") or {}
        if not isinstance(meta, Mapping):
            raise _TemplateError("Metadata must be a mapping", ("Metadata",))
        notes: list[str] = []
        try:
            props = self.properties(raw_props, "", notes)
        except _TemplateError as e:
            raise _TemplateError(str(e), ("Properties",)) from None
        name = logical_id
        hint = meta.get(PHYSICAL_ID_METADATA)
        prop = NAME_PROPERTY.get(rtype)
        if hint is not None:
            h = self.value(hint)
            if not isinstance(h, str):
                raise _TemplateError(f"Metadata {PHYSICAL_ID_METADATA} must resolve to a string", ("Metadata",))
            name = h
        elif prop and isinstance(props.get(prop), str):
            name = props[prop]
        elif prop and f"/{escape(prop)}" in notes:
            self.warnings.append(f"{self.file}: {logical_id} ({rtype}): {prop} cannot be resolved without a stack; "
                                 f"identified by its logical id, its live counterpart is unknown")
        if self.ctx.supported_types is not None and rtype not in self.ctx.supported_types:
            self.warnings.append(f"{self.file}: {logical_id} has type {rtype}, which driftd does not check")
        return AwsDeclaration(
            key=ResourceKey(TargetKind.AWS, rtype, name, self.ctx.region),
            logical_id=logical_id,
            type=rtype,
            properties=props,
            metadata=dict(meta),
            not_checked=tuple(sorted(set(notes))),
            source=self.file,
        )


def _intrinsic(v: Mapping[str, Any]) -> str | None:
    if len(v) == 1:
        (k,) = v.keys()
        if k == "Ref" or (isinstance(k, str) and k.startswith("Fn::")):
            return str(k)
    return None


def _scalar_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, int, float)):
        return str(v)
    raise _TemplateError(f"expected a string, found {type(v).__name__} {v!r}")

