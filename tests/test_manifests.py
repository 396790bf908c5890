"""Kubernetes manifests -> desired objects, and the bounded YAML loader underneath (pure; kubectl for kustomize)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from driftd.errors import DesiredStateError
from driftd.model import TargetKind
from driftd.sources.kustomize import Kustomizer
from driftd.sources.manifests import (
    CLUSTER_SCOPED_KINDS,
    Parsed,
    kustomizations,
    manifests_from_files,
    parse_file,
)
from driftd.sources.yamlsafe import Limits, load_documents

CORPUS = Path(__file__).parent / "data" / "corpus" / "kubernetes"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def build(files: dict[str, str | bytes], namespace: str = "default", rendered: dict[str, Parsed] | None = None):
    parsed = {p: parse_file(d.encode() if isinstance(d, str) else d, p) for p, d in files.items()}
    return manifests_from_files(parsed, rendered or {}, namespace=namespace)


CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"


def test_multi_document_file_with_empty_documents_and_list():
    text = (
        "---\n"
        + CM.format(name="a")
        + "---\n"
        "# only a comment\n"
        "---\n"
        "apiVersion: v1\nkind: List\nitems:\n"
        "- apiVersion: v1\n  kind: Secret\n  metadata: {name: s1}\n"
        "- apiVersion: v1\n  kind: ServiceAccount\n  metadata: {name: sa, namespace: other}\n"
    )
    objs, errs = build({"k/app.yaml": text}, namespace="web")
    assert errs == ()
    assert [(o.key.kind, o.key.namespace, o.key.name, o.source) for o in objs] == [
        ("ConfigMap", "web", "a", "k/app.yaml#0"),
        ("Secret", "web", "s1", "k/app.yaml#2.items[0]"),
        ("ServiceAccount", "other", "sa", "k/app.yaml#2.items[1]"),
    ]
    assert objs[0].body["metadata"]["namespace"] == "web"  # the default is written into the body
    assert objs[0].key.target is TargetKind.KUBERNETES
    assert objs[0].key.api_version == "v1"


def test_cluster_scoped_kinds_get_no_namespace():
    text = (
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\n---\n"
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n---\n"
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
    )
    objs, errs = build({"k/a.yaml": text}, namespace="web")
    assert not errs
    assert {o.key.kind: o.key.namespace for o in objs} == {"ClusterRole": "", "Namespace": "", "Widget": "web"}
    assert {"Namespace", "ClusterRole", "CustomResourceDefinition", "APIService"} <= CLUSTER_SCOPED_KINDS


def test_json_files_are_read_and_other_files_ignored():
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}}
    objs, errs = build({"k/a.json": json.dumps(body), "k/README.md": "# not yaml: {", "k/.hidden/x.yaml": "{"})
    assert not errs
    assert [o.key.name for o in objs] == ["j"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("kind: ConfigMap\nmetadata: {name: a}\n", "ConfigMap a: apiVersion is missing"),
        ("apiVersion: v1\nmetadata: {name: a}\n", "object a: kind is missing"),
        ("apiVersion: v1\nkind: ConfigMap\n", "ConfigMap: metadata is missing"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {labels: {}}\n", "ConfigMap: metadata.name is missing"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {generateName: x-}\n", "generateName is not supported"),
        ("- a\n- b\n", "expected a Kubernetes object (a mapping), found list"),
    ],
)
def test_missing_fields_name_file_and_line(doc, message):
    text = CM.format(name="ok") + "---\n" + doc
    objs, errs = build({"k/ok.yaml": CM.format(name="other"), "k/bad.yaml": text})
    assert len(errs) == 1, errs
    e = errs[0]
    assert message in e.message
    assert (e.file, e.line) == ("k/bad.yaml", 8)
    assert str(e).startswith("k/bad.yaml:8:1: ")
    # the other objects of the same file and of the other file still come out
    assert sorted(o.key.name for o in objs) == ["ok", "other"]


def test_same_object_in_two_files_names_both():
    objs, errs = build({"k/a.yaml": CM.format(name="dup"), "k/b/b.yaml": "# x\n" + CM.format(name="dup")})
    assert len(objs) == 1
    (e,) = errs
    assert e.file == "k/b/b.yaml"
    assert e.line == 2
    assert "ConfigMap default/dup is declared twice: in k/b/b.yaml#0 and in k/a.yaml#0" in e.message


def test_same_name_different_namespace_or_group_is_not_a_duplicate():
    a = CM.format(name="x")
    b = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: other}\n"
    c = "apiVersion: example.com/v1\nkind: ConfigMap\nmetadata: {name: x}\n"
    objs, errs = build({"k/a.yaml": a, "k/b.yaml": b, "k/c.yaml": c})
    assert not errs
    assert len(objs) == 3


def test_invalid_yaml_has_file_line_column():
    objs, errs = build({"k/good.yaml": CM.format(name="g"), "k/bad.yaml": "a: 1\nb: [1, 2\nc: 3\n"})
    (e,) = errs
    assert e.file == "k/bad.yaml"
    assert (e.line, e.column) == (3, 2)
    assert e.message.startswith("invalid YAML:")
    assert [o.key.name for o in objs] == ["g"]


def test_non_utf8_is_refused_with_location():
    (e,) = build({"k/latin1.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: caf\xe9\n"})[1]
    assert e.file == "k/latin1.yaml"
    assert (e.line, e.column) == (4, 12)
    assert "not UTF-8" in e.message
    assert "0xe9" in e.message


def test_duplicate_keys_are_refused():
    (e,) = build({"k/d.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n"})[1]
    assert (e.line, e.column) == (5, 3)
    assert "duplicate key 'name' (first at line 4)" in e.message


@pytest.mark.timeout(20)  # a guard, not a benchmark: a naive walk would never finish
def test_alias_bomb_is_refused_quickly():
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    bomb = ("\n".join(lines) + "\n").encode()  # 10^10 nodes once expanded, < 1 KiB on disk
    assert len(bomb) < 1024
    (e,) = build({"k/bomb.yaml": bomb, "k/ok.yaml": CM.format(name="ok")})[1]
    assert e.file == "k/bomb.yaml"
    assert e.line is not None
    assert "alias-expansion bomb" in e.message


def test_recursive_alias_is_refused():
    with pytest.raises(DesiredStateError, match="recursive YAML alias") as ei:
        load_documents(b"a: &x\n  b: *x\n", "k/r.yaml")
    assert ei.value.file == "k/r.yaml"


def test_too_many_documents_and_too_big_files():
    many = ("---\n" + CM.format(name="a")) * 5
    with pytest.raises(DesiredStateError, match="more than 3 documents in one file") as ei:
        load_documents(many.encode(), "k/many.yaml", limits=Limits(max_documents=3))
    assert (ei.value.line, ei.value.column) == (23, 1)  # the 4th document starts there (7 lines per document)
    with pytest.raises(DesiredStateError, match="over the limit of 10") as ei:
        load_documents(b"a: 12345678901\n", "k/big.yaml", limits=Limits(max_file_bytes=10))
    assert ei.value.file == "k/big.yaml"


def test_timestamps_stay_strings_and_aliases_are_not_shared():
    (d,) = load_documents(b"a: 2024-01-01\nb: &x {k: 1}\nc: *x\n", "t.yaml")
    assert d.value["a"] == "2024-01-01"
    assert d.value["b"] == d.value["c"]
    assert d.value["b"] is not d.value["c"]
    json.dumps(d.value)


def test_unknown_tags_are_refused_in_manifests():
    (e,) = build({"k/t.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: !Ref x}\n"})[1]
    assert e.line == 3
    assert "could not determine a constructor for the tag '!Ref'" in e.message


# --- kustomize ------------------------------------------------------------------------------------


def test_kustomizations_referenced_by_others_are_not_rendered_alone():
    files = {
        "k/base/kustomization.yaml": b"resources: [cm.yaml]\n",
        "k/base/cm.yaml": CM.format(name="a").encode(),
        "k/overlays/prod/kustomization.yaml": b"resources: [../../base]\nnamePrefix: prod-\n",
        "k/other/kustomization.yaml": b"resources: [x.yaml, https://example.com/remote.yaml]\n",
        "k/broken/kustomization.yaml": b"resources: [\n",
    }
    todo = kustomizations(list(files), files)
    assert list(todo) == ["k/broken/kustomization.yaml", "k/other/kustomization.yaml",
                          "k/overlays/prod/kustomization.yaml"]
    assert todo["k/broken/kustomization.yaml"] is not None
    assert todo["k/broken/kustomization.yaml"].line == 2


needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")


def _corpus_files() -> dict[str, bytes]:
    return {str(p.relative_to(CORPUS.parent)): p.read_bytes() for p in sorted(CORPUS.rglob("*")) if p.is_file()}


@needs_kubectl
@pytest.mark.anyio
async def test_corpus_kustomizations_render():
    files = _corpus_files()
    todo = kustomizations(list(files), files)
    assert sorted(todo) == [f"kubernetes/{d}/kustomization.yaml" for d in
                            ("kube-state-metrics", "metrics-server", "podinfo")]
    out = await Kustomizer().render(files, list(todo))
    rendered = {k: parse_file(v, k) if isinstance(v, bytes) else Parsed(error=v) for k, v in out.items()}
    plain = {p: parse_file(b, p) for p, b in files.items()}
    objs, errs = manifests_from_files(plain, rendered, namespace="apps")
    assert errs == ()
    by = {(o.key.kind, o.key.namespace, o.key.name): o for o in objs}
    # kube-state-metrics: kustomization namespace kube-system; cluster-scoped objects have none
    assert ("Deployment", "kube-system", "kube-state-metrics") in by
    assert ("ClusterRole", "", "kube-state-metrics") in by
    # metrics-server: commonLabels put the selector kustomize-side; APIService cluster-scoped
    ms = by[("Deployment", "kube-system", "metrics-server")]
    assert ms.body["spec"]["selector"]["matchLabels"] == {"k8s-app": "metrics-server"}
    assert ("APIService", "", "v1beta1.metrics.k8s.io") in by
    assert ("RoleBinding", "kube-system", "metrics-server-auth-reader") in by
    # podinfo: no namespace in the kustomization -> the environment's
    assert {("Deployment", "apps", "podinfo"), ("HorizontalPodAutoscaler", "apps", "podinfo"),
            ("Service", "apps", "podinfo")} <= set(by)
    assert by[("Service", "apps", "podinfo")].source.startswith("kubernetes/podinfo/kustomization.yaml#")
    assert len(objs) == 5 + 9 + 3  # ksm 5, metrics-server 9 (rbac.yaml holds 6), podinfo 3


def test_corpus_files_parse_one_by_one():
    """Every corpus file parses alone; metrics-server's Deployment is valid only via kustomize (no selector)."""
    for path, data in _corpus_files().items():
        if not path.endswith(".yaml"):
            continue
        p = parse_file(data, path)
        assert p.error is None, p.error
        assert p.documents
        if not path.endswith("kustomization.yaml"):
            for d in p.documents:
                assert isinstance(d.value, dict)
                assert d.value["apiVersion"]
                assert d.value["metadata"]["name"]


@pytest.mark.anyio
async def test_kustomize_without_kubectl_is_a_clear_error():
    files = {"k/app/kustomization.yaml": b"resources: [cm.yaml]\n", "k/app/cm.yaml": CM.format(name="a").encode()}
    out = await Kustomizer(kubectl="kubectl-definitely-not-installed").render(files, ["k/app/kustomization.yaml"])
    err = out["k/app/kustomization.yaml"]
    assert isinstance(err, DesiredStateError)
    assert err.file == "k/app/kustomization.yaml"
    assert "'kubectl-definitely-not-installed' is not on PATH" in err.message


@needs_kubectl
@pytest.mark.anyio
async def test_kustomize_failure_names_the_kustomization():
    files = {"k/app/kustomization.yaml": b"resources: [cm.yaml]\n", "k/app/cm.yaml": b"kind: [oops\n"}
    out = await Kustomizer().render(files, ["k/app/kustomization.yaml"])
    err = out["k/app/kustomization.yaml"]
    assert isinstance(err, DesiredStateError)
    assert err.file == "k/app/kustomization.yaml"
    assert "kubectl kustomize failed" in err.message
    assert "cm.yaml" in err.message
    assert "driftd-kustomize-" not in err.message  # the temp dir is not leaked into messages


def test_object_memo_shares_built_objects_and_keeps_duplicate_checks_per_load():
    """The loader's memo (one parse result read by many environments) builds a file's objects once; the
    duplicate check stays per load, decrypted (sensitive) documents are never memoized."""
    from driftd.sources.manifests import ObjectMemo

    memo = ObjectMemo()
    a = parse_file(CM.format(name="a").encode(), "k/a.yaml")
    dup = parse_file(CM.format(name="a").encode(), "k/dup.yaml")
    first, errs = manifests_from_files({"k/a.yaml": a}, {}, namespace="apps", memo=memo)
    again, errs2 = manifests_from_files({"k/a.yaml": a}, {}, namespace="apps", memo=memo)
    assert errs == errs2 == ()
    assert first[0] is again[0]  # built once
    other_ns, _ = manifests_from_files({"k/a.yaml": a}, {}, namespace="other", memo=memo)
    assert other_ns[0].key.namespace == "other"
    both, errs3 = manifests_from_files({"k/a.yaml": a, "k/dup.yaml": dup}, {}, namespace="apps", memo=memo)
    assert len(both) == 1
    assert "declared twice" in errs3[0].message
    secret = Parsed(a.documents, sensitive=True, size=a.size)
    s1, _ = manifests_from_files({"k/a.yaml": secret}, {}, namespace="apps", memo=memo)
    s2, _ = manifests_from_files({"k/a.yaml": secret}, {}, namespace="apps", memo=memo)
    assert s1[0].sensitive
    assert s1[0] is not s2[0]
