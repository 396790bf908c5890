"""One mode function for every target: the same ``driftd.io/mode`` cases on a Kubernetes ConfigMap
(annotation) and an AWS SSM parameter (``Metadata``) give the same decisions, under ``run`` and under
``sync``, against the sandbox's kube-apiserver and moto.

The issue this guards: the Kubernetes target parsed the annotation itself (``Observe`` was an error
there, ``DISABLED`` unknown, ``alert`` objects skipped by ``sync``), while the policy and the AWS
target did otherwise. Desired state is read from a Git repository by the loader, as the daemon does;
out-of-band changes are made with kubectl and boto3.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from driftd.config import Config, parse_config
from driftd.engine.desired import refresh
from driftd.engine.pools import Sources, TargetPool
from driftd.engine.reconciler import EnvRuntime, Reconciler
from driftd.model import Action, Drift, Mode, PassKind, TargetKind
from tests.git_support import git
from tests.sandbox import Sandbox

pytestmark = [pytest.mark.sandbox]

# case -> the driftd.io/mode value written in Git (None: no annotation)
CASES: dict[str, str | None] = {
    "none": None,
    "observe": "Observe",
    "alert": "ALERT",
    "enforce": "enforce",
    "disabled": "DISABLED",
    "bogus": "enforec",  # a typo: an error naming the object, held in observe (never enforced)
}


@pytest.fixture(scope="module")
def aws_creds(sandbox: Sandbox) -> Iterator[None]:
    keys = {"AWS_ACCESS_KEY_ID": sandbox.aws_access_key_id, "AWS_SECRET_ACCESS_KEY": sandbox.aws_secret_access_key,
            "AWS_DEFAULT_REGION": sandbox.aws_region}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _configmap(name: str, ns: str, mode: str | None, value: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if mode is not None:
        meta["annotations"] = {"driftd.io/mode": mode}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"v": value}}


def _template(tag: str) -> str:
    resources = {}
    for case, mode in CASES.items():
        r: dict[str, Any] = {"Type": "AWS::SSM::Parameter",
                             "Properties": {"Name": f"/modes-{tag}/{case}", "Type": "String", "Value": "git"}}
        if mode is not None:
            r["Metadata"] = {"driftd.io/mode": mode}
        resources[f"P{case.capitalize()}"] = r
    return yaml.safe_dump({"Resources": resources})


def _decisions(drifts: tuple[Drift, ...], kind: TargetKind, tag: str) -> dict[str, tuple[str, str | None]]:
    out = {}
    for d in drifts:
        if d.key.target is not kind:
            continue
        case = d.key.name.rpartition("/")[2].removeprefix(f"cm-{tag}-")
        out[case] = (str(d.action), str(d.mode) if d.mode else None)
    return out


def test_same_annotation_cases_same_decisions_for_kubernetes_and_aws(sandbox: Sandbox, aws_creds: None,
                                                                    tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    ns = f"modes-{tag}"
    sandbox.kubectl("create", "namespace", ns)
    ssm = sandbox.boto3_client("ssm")
    work = tmp_path / "repo"
    git("init", "--quiet", "--initial-branch=main", str(work), cwd=tmp_path)
    (work / "k8s").mkdir()
    (work / "aws").mkdir()
    docs = [_configmap(f"cm-{tag}-{case}", ns, mode, "git") for case, mode in CASES.items()]
    (work / "k8s" / "cms.yaml").write_text(yaml.safe_dump_all(docs))
    (work / "aws" / "params.yaml").write_text(_template(tag))
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "desired", cwd=work)
    # Live as Git says, created the way an operator would before driftd manages them.
    sandbox.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
    for case in CASES:
        ssm.put_parameter(Name=f"/modes-{tag}/{case}", Type="String", Value="git", Overwrite=True)

    cfg = parse_config({
        "daemon": {"state_dir": str(tmp_path / "state")},
        "clusters": [{"name": "sandbox", "kubeconfig": str(sandbox.kubeconfig)}],
        "aws_accounts": [{"name": "moto", "region": sandbox.aws_region, "endpoint_url": sandbox.aws_endpoint,
                          "cloudtrail": False}],
        "repositories": [{"name": "envs", "url": str(work)}],
        "environments": [{"name": "modes", "repository": "envs", "branch": "main", "mode": "alert",
                          "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s"},
                          "aws": {"account": "moto", "path": "aws", "unmanaged": False},
                          # every object drifts on purpose: no drift-storm hold
                          "brakes": {"storm_min_objects": 100}}],
    }, tmp_path / "driftd.toml")

    def drift_everything() -> None:
        for case in CASES:
            sandbox.kubectl("-n", ns, "patch", "configmap", f"cm-{tag}-{case}", "--type=merge",
                            "-p", json.dumps({"data": {"v": "oob"}}))
            ssm.put_parameter(Name=f"/modes-{tag}/{case}", Type="String", Value="oob", Overwrite=True)

    def live() -> dict[str, tuple[str, str]]:
        out = {}
        for case in CASES:
            cm = json.loads(sandbox.kubectl("-n", ns, "get", "configmap", f"cm-{tag}-{case}", "-o", "json").stdout)
            p = ssm.get_parameter(Name=f"/modes-{tag}/{case}")["Parameter"]["Value"]
            out[case] = (cm["data"]["v"], p)
        return out

    results: dict[PassKind, tuple[dict[str, Any], dict[str, Any], str | None]] = {}

    async def one_pass(config: Config, kind: PassKind) -> None:
        sources, pool = Sources(config), TargetPool(config)
        try:
            rt = EnvRuntime(config.environments[0])
            await sources.fetch("envs")
            assert (await refresh(rt, sources, config)).loaded
            rec = Reconciler(None)
            drifts: tuple[Drift, ...] = ()
            for tkind, name in pool.names(rt.settings):
                res = await rec.pass_target(rt, pool.get(tkind, name).target, pass_kind=kind)
                drifts += res.drifts
            report = await rec.publish(rt)
            results[kind] = (_decisions(drifts, TargetKind.KUBERNETES, tag),
                             _decisions(drifts, TargetKind.AWS, tag), report.error)
        finally:
            await pool.aclose()

    try:
        drift_everything()
        anyio.run(one_pass, cfg, PassKind.RUN)
        after_run = live()
        drift_everything()
        anyio.run(one_pass, cfg, PassKind.SYNC)
        after_sync = live()
    finally:
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        for case in CASES:
            ssm.delete_parameter(Name=f"/modes-{tag}/{case}")

    reported, reverted = str(Action.REPORTED), str(Action.REVERTED)
    expected = {
        PassKind.RUN: {"none": (reported, Mode.ALERT), "observe": (reported, Mode.OBSERVE),
                       "alert": (reported, Mode.ALERT), "enforce": (reverted, Mode.ENFORCE),
                       "bogus": (reported, Mode.OBSERVE)},
        PassKind.SYNC: {"none": (reverted, Mode.ENFORCE), "observe": (reported, Mode.OBSERVE),
                        "alert": (reverted, Mode.ENFORCE), "enforce": (reverted, Mode.ENFORCE),
                        "bogus": (reported, Mode.OBSERVE)},
    }
    for kind, (kube, aws, error) in results.items():
        want = {c: (a, str(m)) for c, (a, m) in expected[kind].items()}
        assert kube == want, (kind, "kubernetes")
        assert aws == want, (kind, "aws")  # the same decisions, whatever the target
        assert error is not None
        assert f"cm-{tag}-bogus" in error  # the typo is named, per object, for both targets
        assert f"/modes-{tag}/bogus" in error
    # What the decisions did to live state: disabled never touched, observe never reverted.
    assert after_run["enforce"] == ("git", "git")
    others = {c: v for c, v in after_run.items() if c != "enforce"}
    assert others == {c: ("oob", "oob") for c in CASES if c != "enforce"}
    assert after_sync == {"none": ("git", "git"), "observe": ("oob", "oob"), "alert": ("git", "git"),
                          "enforce": ("git", "git"), "disabled": ("oob", "oob"), "bogus": ("oob", "oob")}


def test_object_mode_override_on_a_cluster_scoped_custom_resource(sandbox: Sandbox, tmp_path: Path) -> None:
    """The loader cannot know a custom kind's scope and keys it with the default namespace; only discovery
    knows. The override must still hold for the object the target checks and reverts (one key), and one
    pass plans the revision once (check and revert share the plan)."""
    tag = uuid.uuid4().hex[:6]
    group = f"k8s12-{tag}.example.com"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"gadgets.{group}"},
           "spec": {"group": group, "scope": "Cluster",
                    "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "properties": {
                            "size": {"type": "integer"}}}}}}}]}}
    sandbox.kubectl("apply", "-f", "-", input=yaml.safe_dump(crd))
    sandbox.kubectl("wait", "--for=condition=Established", f"crd/gadgets.{group}", "--timeout=30s")

    def gadget(name: str, mode: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": f"{name}-{tag}"}
        if mode:
            meta["annotations"] = {"driftd.io/mode": mode}
        return {"apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": meta, "spec": {"size": 1}}

    docs = [gadget("held", "Observe"), gadget("free", None)]
    work = tmp_path / "repo"
    git("init", "--quiet", "--initial-branch=main", str(work), cwd=tmp_path)
    (work / "k8s").mkdir()
    (work / "k8s" / "gadgets.yaml").write_text(yaml.safe_dump_all(docs))
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "desired", cwd=work)
    sandbox.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    for name in ("held", "free"):
        sandbox.kubectl("patch", "gadget", f"{name}-{tag}", "--type=merge", "-p", '{"spec":{"size":7}}')
    cfg = parse_config({
        "daemon": {"state_dir": str(tmp_path / "state")},
        "clusters": [{"name": "sandbox", "kubeconfig": str(sandbox.kubeconfig)}],
        "repositories": [{"name": "envs", "url": str(work)}],
        "environments": [{"name": "cr", "repository": "envs", "branch": "main", "mode": "enforce",
                          "kubernetes": {"cluster": "sandbox", "namespace": "default", "path": "k8s"}}],
    }, tmp_path / "driftd.toml")
    got: dict[str, Any] = {}

    async def main() -> None:
        sources, pool = Sources(cfg), TargetPool(cfg)
        try:
            rt = EnvRuntime(cfg.environments[0])
            await sources.fetch("envs")
            assert (await refresh(rt, sources, cfg)).loaded
            target = pool.get(TargetKind.KUBERNETES, "sandbox").target
            res = await Reconciler(None).pass_target(rt, target, pass_kind=PassKind.RUN)
            got["drifts"] = {d.key.name: d for d in res.drifts}
            got["plans"] = getattr(target, "plans_made")  # noqa: B009 (a KubernetesTarget counter)
        finally:
            await pool.aclose()

    try:
        anyio.run(main)
        held, free = got["drifts"][f"held-{tag}"], got["drifts"][f"free-{tag}"]
        assert held.key.namespace == ""  # named as the cluster does, not with the loader's default namespace
        assert (held.action, held.mode) == (Action.REPORTED, Mode.OBSERVE)  # the override found its object
        assert (free.action, free.mode) == (Action.REVERTED, Mode.ENFORCE)
        assert sandbox.kubectl_json("get", "gadget", f"held-{tag}")["spec"]["size"] == 7
        assert sandbox.kubectl_json("get", "gadget", f"free-{tag}")["spec"]["size"] == 1
        assert got["plans"] == 1  # the revert reused the check's plan
    finally:
        sandbox.kubectl("delete", "crd", f"gadgets.{group}", "--wait=false", check=False)
