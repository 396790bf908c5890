"""policy.yamledit: values set, added and removed at JSON pointers, every other byte kept."""

from __future__ import annotations

import pytest
import yaml

from driftd.policy.yamledit import EditError, delete_value, set_value

TEXT = """\
# the web app
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web   # keep me
  labels: {app: web}
spec:
  replicas: 2 # two is enough

  template:
    spec:
      containers:
        - name: web
          image: "nginx:1.27"  # pinned
          ports:
            - containerPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data:
  k: v
  other: 'x'
"""


def test_scalar_in_place_keeps_comments_quotes_and_blank_lines() -> None:
    out = set_value(TEXT, 0, "/spec/replicas", 5)
    assert out == TEXT.replace("replicas: 2 # two", "replicas: 5 # two")
    out = set_value(TEXT, 0, "/spec/template/spec/containers/0/image", "nginx:1.28")
    assert '          image: "nginx:1.28"  # pinned\n' in out
    out = set_value(TEXT, 1, "/data/other", "it's")
    assert "  other: 'it''s'\n" in out


def test_new_keys_nested_maps_and_list_items() -> None:
    out = set_value(TEXT, 0, "/spec/template/spec/containers/0/env", [{"name": "A", "value": "1"}])
    out = set_value(out, 0, "/metadata/annotations/note", "hi")
    out = set_value(out, 0, "/metadata/labels/team", "x")  # flow map: rewritten as JSON
    out = set_value(out, 0, "/spec/template/spec/containers/0/ports/1", {"containerPort": 81})
    docs = list(yaml.safe_load_all(out))
    c = docs[0]["spec"]["template"]["spec"]["containers"][0]
    assert c["env"] == [{"name": "A", "value": "1"}]
    assert c["ports"] == [{"containerPort": 80}, {"containerPort": 81}]
    assert docs[0]["metadata"] == {"name": "web", "labels": {"app": "web", "team": "x"}, "annotations": {"note": "hi"}}
    assert "# the web app\n" in out
    assert "name: web   # keep me\n" in out
    assert "replicas: 2 # two is enough\n\n  template:" in out
    assert docs[1] == yaml.safe_load(TEXT.split("---\n")[1])  # the other document untouched


def test_delete_and_replace_a_collection() -> None:
    out = delete_value(TEXT, 1, "/data/other")
    assert out.endswith("data:\n  k: v\n")
    out = set_value(TEXT, 0, "/spec/template/spec/containers/0/ports", [{"containerPort": 8080, "name": "http"}])
    c = yaml.safe_load_all(out).__next__()["spec"]["template"]["spec"]["containers"][0]
    assert c["ports"] == [{"containerPort": 8080, "name": "http"}]
    assert '"nginx:1.27"  # pinned' in out


def test_list_item_of_a_kind_list() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: ConfigMap\n    data:\n      a: '1'\n"
    out = set_value(text, 0, "/data/a", "2", prefix="/items/0")
    assert out == text.replace("a: '1'", "a: '2'")


def test_impossible_edits_are_refused() -> None:
    with pytest.raises(EditError):
        set_value(TEXT, 0, "/spec/replicas/x", 1)  # below a scalar
    with pytest.raises(EditError):
        set_value(TEXT, 5, "/spec/replicas", 1)  # no such document
    with pytest.raises(EditError):
        set_value("a: [1, 2\n", 0, "/a/0", 3)  # not YAML
