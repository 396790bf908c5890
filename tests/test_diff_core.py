"""Pure tests of driftd.diff on real objects captured from kube-apiserver (tests/data/diff)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from driftd.config import IgnoreRule
from driftd.diff import ignore, managed_fields, pointer
from driftd.diff.compare import compare
from driftd.diff.explain import explain, hpa_targets
from driftd.diff.normalize import normalize
from driftd.diff.secrets import redact_changes
from driftd.model import REDACTED, Change, ChangeOp
from driftd.targets.kubernetes.rbac import rbac_rules

DATA = Path(__file__).parent / "data" / "diff"
HUMANS = ("kubectl", "kubectl-*")


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def test_pointer_escape_get_expand_remove() -> None:
    obj = {"metadata": {"annotations": {"a/b": "1", "c~d": "2"}}, "l": [{"name": "x", "v": 1}, {"name": "y", "v": 2}]}
    assert pointer.get(obj, "/metadata/annotations/a~1b") == "1"
    assert pointer.get(obj, "/metadata/annotations/c~0d") == "2"
    assert list(pointer.expand(obj, "/l/name=y/v")) == ["/l/1/v"]
    assert list(pointer.expand(obj, "/l/*/v")) == ["/l/0/v", "/l/1/v"]
    out = pointer.remove_matching(obj, ["/l/*", "/metadata/annotations/a~1b"])
    assert out == {"metadata": {"annotations": {"c~d": "2"}}, "l": []}
    assert obj["l"]  # the input is not modified


def test_compare_keyed_lists_and_ops() -> None:
    exp = {"env": [{"name": "A", "value": "1"}], "args": ["a", "b"], "gone": 1}
    act = {"env": [{"name": "B", "value": "2"}, {"name": "A", "value": "9"}], "args": ["a"], "new": True}
    got = {(c.path, c.op) for c in compare(exp, act)}
    assert got == {("/env/1/value", ChangeOp.NOT_EQUAL), ("/env/0", ChangeOp.ADD), ("/args", ChangeOp.NOT_EQUAL),
                   ("/gone", ChangeOp.REMOVE), ("/new", ChangeOp.ADD)}
    assert compare(exp, json.loads(json.dumps(exp))) == []


def test_normalize_drops_volatile_keeps_labels() -> None:
    live = load("ksm-live.json")
    n = normalize(live)
    assert "status" not in n
    assert not {"managedFields", "resourceVersion", "uid", "generation", "creationTimestamp"} & n["metadata"].keys()
    assert n["metadata"]["labels"]["team"] == "ops"


def test_explain_real_objects_finds_image_label_and_added_env_with_attribution() -> None:
    v = explain(kind="Deployment", predicted=load("ksm-predicted.json"), live=load("ksm-live.json"),
                human_managers=HUMANS)
    by_path = {c.path: c for c in v.changes}
    img = by_path["/spec/template/spec/containers/0/image"]
    assert img.actual == "example/ksm:v9"
    assert img.changed_by == "kubectl-set"
    env = by_path["/spec/template/spec/containers/0/env"]
    assert env.op is ChangeOp.ADD
    assert env.actual == [{"name": "ADDED_VAR", "value": "1"}]
    lab = by_path["/metadata/labels/team"]
    assert (lab.op, lab.changed_by) == (ChangeOp.ADD, "kubectl-label")
    assert v.changed_by in ("kubectl-set", "kubectl-label")
    assert v.changed_at is not None


def test_explain_ignore_and_no_humans_means_no_additions() -> None:
    v = explain(kind="Deployment", predicted=load("ksm-predicted.json"), live=load("ksm-live.json"),
                human_managers=(), ignored=("/spec/template/spec/containers/*/image",))
    assert [c.path for c in v.changes] == []  # additions need a human manager; the image is ignored


def test_explain_equal_objects_in_sync_unless_humans_added_fields() -> None:
    live = load("ksm-live.json")
    assert explain(kind="Deployment", predicted=live, live=live, human_managers=()).changes == ()
    v = explain(kind="Deployment", predicted=live, live=live, human_managers=HUMANS)
    assert {c.op for c in v.changes} == {ChangeOp.ADD}


def test_additions_skip_server_defaults_owned_by_update_managers() -> None:
    live = load("ksm-live.json")
    adds = managed_fields.additions(live, load("ksm-predicted.json"), HUMANS)
    assert [a.pointer for a in adds] == ["/metadata/labels/team", "/spec/template/spec/containers/0/env"]
    defaults = json.loads(json.dumps(live))
    defaults["metadata"]["labels"]["team"] = "ops"  # as if the server defaulted it
    assert not managed_fields.differs_from_defaults(adds[0], defaults)
    assert managed_fields.differs_from_defaults(adds[1], load("ksm-desired.json"))


def test_take_over_merges_humans_and_keeps_ignored() -> None:
    live = load("ksm-live.json")
    mf = live["metadata"]["managedFields"]
    keep_path = ("f:metadata", "f:labels", "f:team")
    new = managed_fields.take_over(mf, HUMANS, "apps/v1", keep=lambda p: p == keep_path)
    assert new is not None
    managers = [e["manager"] for e in new]
    assert "kubectl-set" not in managers
    mine = next(e for e in new if e["manager"] == "driftd")
    assert "f:env" in json.dumps(mine["fieldsV1"])
    label_entry = next(e for e in new if e["manager"] == "kubectl-label")
    assert label_entry["fieldsV1"] == {"f:metadata": {"f:labels": {"f:team": {}}}}
    assert managed_fields.take_over([e for e in mf if e["manager"] == "driftd"], HUMANS, "apps/v1") is None


def test_secret_values_redacted() -> None:
    changes = [Change("/data/password", "c2VjcmV0", "bmV3", ChangeOp.NOT_EQUAL),
               Change("/data", None, {"k": "dmFs"}, ChangeOp.ADD), Change("/type", "Opaque", "x")]
    out = redact_changes("Secret", changes)
    assert (out[0].expected, out[0].actual) == (REDACTED, REDACTED)
    assert out[1].actual == {"k": REDACTED}
    assert out[2].actual == "x"
    # in another kind, a field named like a secret is masked too (issue 14 §3), an ordinary one is not
    assert redact_changes("ConfigMap", changes)[0].actual == REDACTED
    assert redact_changes("ConfigMap", [Change("/data/color", "blue", "red")])[0].actual == "red"


def test_ignore_rules_annotation_and_hpa() -> None:
    body = {"metadata": {"annotations": {"driftd.io/ignore": "/spec/a, /data/b ,nope"}}}
    rules = (IgnoreRule(paths=("/spec/x",), kind="Deploy*", name="web-*"), IgnoreRule(paths=("/y",), kind="Service"))
    got = ignore.ignored_paths(rules, kind="Deployment", name="web-1", namespace="n", body=body, hpa_target=True)
    assert got == ("/spec/x", "/spec/a", "/data/b", "/spec/replicas")
    assert ignore.invalid_annotation_paths(body) == ("nope",)
    hpa = {"kind": "HorizontalPodAutoscaler", "metadata": {"namespace": "n"},
           "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}}}
    assert hpa_targets([hpa]) == {("Deployment", "n", "web")}


def test_rbac_rules() -> None:
    rules = rbac_rules([("apps", "deployments"), ("", "configmaps"), ("apps", "statefulsets")], enforce=False)
    assert rules == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "patch"]},
                     {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"],
                      "verbs": ["get", "list", "watch", "patch"]}]
    assert "delete" in rbac_rules([("", "secrets")], enforce=True)[0]["verbs"]
