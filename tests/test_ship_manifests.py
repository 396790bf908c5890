"""The shipped Kubernetes manifests (config/kubernetes/), read as files: the sidecar is locked down,
its config is valid, the overlays render, and the roles and admission policy agree with each other.
tests/test_ship_kubernetes.py applies them to a real API server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import tomli
import yaml

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "config" / "kubernetes" / "base"
ENFORCE = ROOT / "config" / "kubernetes" / "enforce"


def _docs(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for f in sorted(path.glob("*.yaml")):
        out += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return out


def test_sidecar_pod_spec_is_locked_down() -> None:
    (dep,) = [d for d in _docs(BASE) if d["kind"] == "Deployment"]
    spec = dep["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "driftd"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (c,) = [c for c in spec["containers"] if c["name"] == "driftd"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["runAsUser"] == 10001  # the image's USER
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in c["env"]}
    assert {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"} <= env.keys()
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    token_dir = str(Path(env["AWS_WEB_IDENTITY_TOKEN_FILE"]["value"]).parent)
    vols = {v["name"]: v for v in spec["volumes"]}
    aws_vol = vols[mounts[token_dir]["name"]]
    (src,) = aws_vol["projected"]["sources"]
    assert src["serviceAccountToken"]["audience"] == "sts.amazonaws.com"
    # state_dir and /tmp are writable volumes; the config is a read-only ConfigMap
    (cm,) = [d for d in _docs(BASE) if d["kind"] == "ConfigMap"]
    cfg = cm["data"]["driftd.toml"]
    state_dir = tomli.loads(cfg)["daemon"]["state_dir"]
    assert state_dir in mounts
    assert "/tmp" in mounts
    assert mounts["/etc/driftd"]["readOnly"] is True
    assert tomli.loads(cfg)["daemon"]["listen"].startswith("0.0.0.0:")
    assert tomli.loads(cfg)["daemon"]["api_token_file"]


def test_sidecar_config_is_valid(tmp_path: Path) -> None:
    from driftd.config import parse_config

    (cm,) = [d for d in _docs(BASE) if d["kind"] == "ConfigMap"]
    token = tmp_path / "token"
    token.write_text("x")
    api_token = tmp_path / "api-token"
    api_token.write_text("y" * 64)
    text = cm["data"]["driftd.toml"].replace("/etc/driftd/git/token", str(token)) \
        .replace("/etc/driftd/api/token", str(api_token))
    cfg = parse_config(tomli.loads(text), tmp_path / "driftd.toml")
    assert cfg.clusters["this-cluster"].kubeconfig is None  # in-cluster
    # beyond loopback, so the API token is set (driftd refuses to start without it)
    from driftd.server import check_exposure

    assert cfg.daemon.api_token_file == api_token
    check_exposure(cfg.daemon)


def test_api_token_is_mounted_from_a_secret() -> None:
    """The sidecar's config names an API token file, and that file is a key of a Secret volume
    mounted read-only (never a ConfigMap, an env var or a literal in the manifests)."""
    (cm,) = [d for d in _docs(BASE) if d["kind"] == "ConfigMap"]
    token_file = Path(tomli.loads(cm["data"]["driftd.toml"])["daemon"]["api_token_file"])
    (dep,) = [d for d in _docs(BASE) if d["kind"] == "Deployment"]
    spec = dep["spec"]["template"]["spec"]
    (c,) = [c for c in spec["containers"] if c["name"] == "driftd"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    mount = mounts[str(token_file.parent)]
    assert mount["readOnly"] is True
    vol = {v["name"]: v for v in spec["volumes"]}[mount["name"]]
    assert vol["secret"]["secretName"] == "driftd-api-token"
    assert vol["secret"]["defaultMode"] & 0o007 == 0, "not world-readable"
    # no Secret with a token is shipped
    assert not [d for d in _docs(BASE) if d["kind"] == "Secret"]


def test_network_policy_admits_only_scrapes_and_api_clients_on_the_http_port() -> None:
    docs = _docs(BASE)
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    (np,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert np["metadata"]["namespace"] == dep["metadata"]["namespace"]
    sel = np["spec"]["podSelector"]["matchLabels"]
    assert sel.items() <= pod_labels.items(), "the policy selects driftd's pods"
    assert "Ingress" in np["spec"]["policyTypes"]
    (c,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "driftd"]
    http_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "http")
    rules = np["spec"]["ingress"]
    assert rules, "an empty ingress list would deny the scrapes too"
    for rule in rules:
        # never "from anywhere": every rule names its peers, and only the HTTP port
        assert rule.get("from"), rule
        assert [p["port"] for p in rule["ports"]] == [http_port]
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            assert peer.get("podSelector", {}).get("matchLabels"), f"a peer without a pod selector: {peer}"


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_roles_cover_the_same_kinds_and_observe_patches_only_for_dry_runs() -> None:
    roles = _by_kind(_docs(BASE), "ClusterRole")
    observe, enforce = roles["driftd-observe"], roles["driftd-enforce"]

    def pairs(role: dict[str, Any], verb: str) -> set[tuple[str, str]]:
        return {(g, r) for rule in role["rules"] if verb in rule.get("verbs", ())
                for g in rule.get("apiGroups", ()) for r in rule.get("resources", ())}

    readable = pairs(observe, "list")
    writable = {p for p in pairs(enforce, "patch")}
    # every kind enforce writes is one observe reads and dry-runs
    assert writable <= readable
    assert writable <= pairs(observe, "patch")
    assert writable == pairs(enforce, "create") == pairs(enforce, "delete")
    # observe never creates or deletes; nobody may escalate
    for verb in ("create", "delete", "update", "escalate", "bind", "impersonate", "*"):
        assert not pairs(observe, verb), verb
    for verb in ("escalate", "bind", "impersonate", "*"):
        assert not pairs(enforce, verb), verb
    assert ("driftd.io", "modes") in pairs(enforce, "enforce")
    # RBAC objects are read, never written
    assert ("rbac.authorization.k8s.io", "roles") in readable
    assert not {p for p in writable if p[0] == "rbac.authorization.k8s.io"}


def test_admission_policy_targets_the_shipped_service_account() -> None:
    docs = _docs(BASE)
    (sa,) = _by_kind(docs, "ServiceAccount").values()
    user = f"system:serviceaccount:{sa['metadata']['namespace']}:{sa['metadata']['name']}"
    (vap,) = _by_kind(docs, "ValidatingAdmissionPolicy").values()
    cond, leases = vap["spec"]["matchConditions"]
    assert f"'{user}'" in cond["expression"]
    # Its own coordination Leases in its own namespace are exempt (config/kubernetes/replicas).
    assert "'leases'" in leases["expression"]
    assert f"request.namespace == '{sa['metadata']['namespace']}'" in leases["expression"]
    (rule,) = vap["spec"]["validations"]
    assert "request.dryRun == true" in rule["expression"]
    assert "check('enforce')" in rule["expression"]
    assert rule["reason"] == "Forbidden"  # a 403, which driftd reports as a missing permission
    assert vap["spec"]["failurePolicy"] == "Fail"
    (binding,) = _by_kind(docs, "ValidatingAdmissionPolicyBinding").values()
    assert binding["spec"]["policyName"] == vap["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    for crb in _by_kind(docs + _docs(ENFORCE), "ClusterRoleBinding").values():
        (subject,) = crb["subjects"]
        assert (subject["namespace"], subject["name"]) == (sa["metadata"]["namespace"], sa["metadata"]["name"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomizations_render() -> None:
    def render(d: Path) -> list[dict[str, Any]]:
        out = subprocess.run(["kubectl", "kustomize", str(d)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [x for x in yaml.safe_load_all(out.stdout) if x]

    base = render(BASE)
    enforce = render(ENFORCE)
    assert "driftd-enforce" not in _by_kind(base, "ClusterRoleBinding")
    assert "driftd-enforce" in _by_kind(enforce, "ClusterRoleBinding")
    assert len(enforce) == len(base) + 1
    listed = {f.name for f in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    res = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    assert set(res) == listed, "every manifest in base/ is part of the kustomization"
