"""diff.noop on objects captured from kube-apiserver right after a driftd apply (in sync).

Each case edits the captured pair the way Git or an operator would and checks that the proof
refuses whenever a dry run could find something. The sandbox test in test_k8s_target.py checks
the same cases end to end: fast path and dry run give the same verdicts.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from driftd.diff.noop import apply_is_noop, prove, same, schema_pointer, server_rewrites
from driftd.diff.quantity import amount, same_amount

DATA = json.loads((Path(__file__).parent / "data" / "diff" / "noop-insync.json").read_text())
HUMANS = ("kubectl", "kubectl-*")


def pair(kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return copy.deepcopy(DATA[kind]["applied"]), copy.deepcopy(DATA[kind]["live"])


def container(o: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = o["spec"]["template"]["spec"]["containers"][0]
    return c


def mine(live: dict[str, Any]) -> dict[str, Any]:
    e: dict[str, Any] = next(e for e in live["metadata"]["managedFields"] if e["manager"] == "driftd")
    return e


def test_in_sync_objects_are_proven() -> None:
    for kind in ("Deployment", "Service"):
        applied, live = pair(kind)
        assert apply_is_noop(applied, live, HUMANS) is None, kind


def _value_changed_live(a: dict[str, Any], lv: dict[str, Any]) -> None:
    container(lv)["image"] = "other:1"


def _value_changed_git(a: dict[str, Any], lv: dict[str, Any]) -> None:
    container(a)["image"] = "registry.k8s.io/kube-state-metrics/kube-state-metrics:v9"


def _git_drops_field(a: dict[str, Any], lv: dict[str, Any]) -> None:
    del a["metadata"]["labels"]["app.kubernetes.io/version"]  # driftd still owns it: the apply removes it


def _git_adds_field(a: dict[str, Any], lv: dict[str, Any]) -> None:
    a["metadata"]["labels"]["new"] = "x"


def _git_adds_field_already_live(a: dict[str, Any], lv: dict[str, Any]) -> None:
    # Equal value, but driftd does not own it yet: no schema knowledge, ask the server.
    a["metadata"].setdefault("annotations", {})["x"] = "1"
    lv["metadata"].setdefault("annotations", {})["x"] = "1"


def _type_differs(a: dict[str, Any], lv: dict[str, Any]) -> None:
    a["spec"]["replicas"] = True  # True == 1 in Python, not in JSON
    lv["spec"]["replicas"] = 1


def _atomic_list_extra_item_in_live(a: dict[str, Any], lv: dict[str, Any]) -> None:
    container(lv)["securityContext"]["capabilities"]["drop"].append("NET_RAW")  # atomic list


def _keyed_list_extra_item_in_live(a: dict[str, Any], lv: dict[str, Any]) -> None:
    container(lv)["ports"].append({"containerPort": 1, "protocol": "TCP"})


def _keyed_list_reordered(a: dict[str, Any], lv: dict[str, Any]) -> None:
    container(a)["ports"].reverse()  # an apply would reorder the live list


def _human_adds_field(a: dict[str, Any], lv: dict[str, Any]) -> None:
    lv["metadata"]["labels"]["team"] = "ops"
    lv["metadata"]["managedFields"].append({
        "manager": "kubectl-label", "operation": "Update", "apiVersion": "apps/v1", "time": "2026-01-01T00:00:00Z",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}}})


def _not_applied_by_driftd(a: dict[str, Any], lv: dict[str, Any]) -> None:
    mine(lv)["manager"] = "kubectl"


def _entry_at_other_version(a: dict[str, Any], lv: dict[str, Any]) -> None:
    mine(lv)["apiVersion"] = "apps/v1beta2"


def _status_declared(a: dict[str, Any], lv: dict[str, Any]) -> None:
    a["status"] = {"replicas": 1}


def _atomic_struct_with_extra_live_key(a: dict[str, Any], lv: dict[str, Any]) -> None:
    lv["spec"]["selector"]["matchLabels"]["extra"] = "1"  # spec.selector is atomic: compared whole


def _name_differs(a: dict[str, Any], lv: dict[str, Any]) -> None:
    a["metadata"]["name"] = "other"


@pytest.mark.parametrize("edit", [
    _value_changed_live, _value_changed_git, _git_drops_field, _git_adds_field, _git_adds_field_already_live,
    _type_differs, _atomic_list_extra_item_in_live, _keyed_list_extra_item_in_live, _keyed_list_reordered,
    _human_adds_field, _not_applied_by_driftd, _entry_at_other_version, _status_declared,
    _atomic_struct_with_extra_live_key, _name_differs,
], ids=lambda f: f.__name__.strip("_"))
def test_refuses_what_only_a_dry_run_can_judge(edit: Callable[[dict[str, Any], dict[str, Any]], None]) -> None:
    applied, live = pair("Deployment")
    edit(applied, live)
    assert apply_is_noop(applied, live, HUMANS) is not None


def test_controller_additions_and_defaults_do_not_block_the_proof() -> None:
    applied, live = pair("Deployment")
    # A controller (not a human) owning a field Git does not declare is not drift.
    live["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = "3"
    live["metadata"]["managedFields"].append({
        "manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}}})
    assert apply_is_noop(applied, live, HUMANS) is None
    # Server defaults live (terminationMessagePath...) beyond what Git declares: fine.
    assert "terminationMessagePath" in container(live)
    assert "terminationMessagePath" not in container(applied)


def test_keyed_items_match_with_defaulted_key_fields() -> None:
    applied, live = pair("Service")
    assert all("protocol" in p for p in live["spec"]["ports"])
    for p in applied["spec"]["ports"]:
        p.pop("protocol", None)
    # Git no longer declares protocol: driftd's entry still owns it, so the proof must refuse.
    assert apply_is_noop(applied, live, HUMANS) is not None


def test_same_compares_types() -> None:
    assert same({"a": [1, "x"]}, {"a": [1, "x"]})
    assert not same(1, 1.0)
    assert not same(True, 1)
    assert not same({"a": 1}, {"a": 1, "b": 2})
    assert not same([1], [1, 2])


QUANTITY = json.loads((Path(__file__).parent / "data" / "diff" / "noop-quantity.json").read_text())
CPU = "/spec/template/spec/containers/0/resources/limits/cpu"


def test_quantities_are_pending_until_the_server_shows_how_it_stores_them() -> None:
    applied, live, predicted = (copy.deepcopy(QUANTITY[k]) for k in ("applied", "live", "predicted"))
    assert container(applied)["resources"]["limits"]["cpu"] == "2000m"
    assert container(live)["resources"]["limits"]["cpu"] == "2"
    proof = prove(applied, live, HUMANS)
    assert not proof.noop
    assert proof.pending == ((CPU, "2000m"),)
    # One dry run's result teaches it: (schema pointer, declared) -> stored, same amount.
    assert server_rewrites(applied, predicted) == [(CPU, "2000m", "2")]
    assert schema_pointer(CPU) == "/spec/template/spec/containers/*/resources/limits/cpu"
    learned = {(schema_pointer(CPU), "2000m"): "2"}

    def stored(ptr: str, value: Any) -> Any:
        return learned.get((schema_pointer(ptr), value))

    assert prove(applied, live, HUMANS, canonical=stored).noop
    # Live changed to another amount (kubectl edit): the learned form does not match, it is drift.
    container(live)["resources"]["limits"]["cpu"] = "3"
    assert not prove(applied, live, HUMANS, canonical=stored).noop
    assert not prove(applied, live, HUMANS, canonical=stored).pending
    # Same amount, another spelling than the one the server makes of Git's value: not proven.
    container(live)["resources"]["limits"]["cpu"] = "2.0"
    assert not prove(applied, live, HUMANS, canonical=stored).noop


def test_nothing_is_learned_from_items_that_do_not_line_up() -> None:
    applied, predicted = copy.deepcopy(QUANTITY["applied"]), copy.deepcopy(QUANTITY["predicted"])
    container(predicted)["ports"].reverse()
    assert server_rewrites(applied, predicted) == []


def test_quantity_amounts() -> None:
    assert same_amount("2000m", "2")
    assert same_amount("1Gi", "1073741824")
    assert same_amount("1k", 1000)
    assert same_amount("1e3", "1k")
    assert same_amount(".5", "500m")
    assert not same_amount("1Ki", "1k")
    assert not same_amount("100m", "1")
    assert amount("http") is None
    assert amount(True) is None
    assert amount("1.2.3") is None
