"""Rendezvous hashing (driftd.policy.rendezvous): agreement, balance, minimal movement."""

from __future__ import annotations

from collections import Counter

from driftd.policy.rendezvous import assign, owner, weight

ENVS = [f"env-{i:03d}" for i in range(300)]


def test_no_member_no_owner() -> None:
    assert owner("prod", []) is None


def test_order_of_members_does_not_matter() -> None:
    a = assign(ENVS, ["r0", "r1", "r2"])
    b = assign(ENVS, ["r2", "r0", "r1", "r0"])
    assert a == b


def test_weight_is_stable_across_processes() -> None:
    # A fixed value: Python's salted hash() would differ per process and replicas would disagree.
    assert weight("driftd-0", "prod") == weight("driftd-0", "prod")
    assert weight("driftd-0", "prod") != weight("driftd-1", "prod")
    assert weight("a|b", "c") != weight("a", "b|c")  # the separator is unambiguous


def test_balanced_over_members() -> None:
    counts = Counter(assign(ENVS, ["r0", "r1", "r2"]).values())
    assert set(counts) == {"r0", "r1", "r2"}
    assert all(60 <= n <= 140 for n in counts.values()), counts


def test_a_leaving_member_moves_only_its_own() -> None:
    before = assign(ENVS, ["r0", "r1", "r2"])
    after = assign(ENVS, ["r0", "r2"])
    moved = {e for e in ENVS if before[e] != after[e]}
    assert moved == {e for e in ENVS if before[e] == "r1"}
    assert {after[e] for e in moved} == {"r0", "r2"}  # spread over the survivors, not dumped on one


def test_a_joining_member_takes_only_its_share() -> None:
    before = assign(ENVS, ["r0", "r1", "r2"])
    after = assign(ENVS, ["r0", "r1", "r2", "r3"])
    moved = {e for e in ENVS if before[e] != after[e]}
    assert all(after[e] == "r3" for e in moved)
    assert 40 <= len(moved) <= 110  # about a quarter
