"""engine.images against the real registry and the real state store: report, moved tags, missing digests."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from registry_support import delete_manifest, push_image

from driftd.config import parse_config
from driftd.engine.images import ImagePoller, MemoryKeyValueStore, declared_images
from driftd.metrics import REGISTRY as METRICS
from driftd.model import DesiredObject, DesiredState, ResourceKey, TargetKind
from driftd.policy.images import FindingKind
from driftd.state import StateStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _config(tmp_path: Path, registry: str, images: list[dict], env: str = "prod"):
    return parse_config({
        "daemon": {"state_dir": str(tmp_path / "state")},
        "clusters": [{"name": "c"}],
        "repositories": [{"name": "r", "url": "git://127.0.0.1:1/r"}],
        "registries": [{"host": registry, "insecure": True}],
        "environments": [{"name": env, "repository": "r", "branch": "main", "kubernetes": {"cluster": "c"},
                          "images": images}],
    }, tmp_path / "driftd.toml")


def _desired(*images: str) -> DesiredState:
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "namespace": "default"},
            "spec": {"template": {"spec": {
                "initContainers": [{"name": "init", "image": images[0]}],
                "containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images[1:])]}}}}
    key = ResourceKey(TargetKind.KUBERNETES, "Deployment", "app", "default", "apps/v1")
    return DesiredState(revision="abc", kubernetes=(DesiredObject(key, body, "kubernetes/app.yaml"),))


def test_declared_images_walks_every_container_list() -> None:
    d = _desired("a:1", "b:2", "c@sha256:" + "0" * 64)
    assert [r for r, _ in declared_images(d)] == ["a:1", "b:2", "c@sha256:" + "0" * 64]


@pytest.mark.anyio
async def test_report_moved_tag_and_missing_digest(sandbox, tmp_path: Path) -> None:
    reg = sandbox.registry
    repo = f"t/engine-{uuid.uuid4().hex[:8]}"
    push_image(reg, repo, "1.0.0", content="one")
    first_110 = push_image(reg, repo, "1.1.0", content="two")
    pinned = push_image(reg, repo, "0.9.0", content="old pinned")
    cfg = _config(tmp_path, reg, [
        {"name": "app", "image": f"{reg}/{repo}", "semver": "^1"},
        {"name": "broken", "image": "127.0.0.1:1/nothing/here", "semver": "*"},
    ])
    env = cfg.environments[0]
    desired = _desired(f"{reg}/{repo}:1.0.0", f"{reg}/{repo}:1.1.0", f"{reg}/{repo}@{pinned}")

    async with StateStore.open(tmp_path / "state") as store:
        poller = ImagePoller(cfg, store)
        try:
            s1 = await poller.poll(env, desired)
        finally:
            await poller.aclose()
    kinds = {(f.policy, f.kind) for f in s1.findings}
    assert ("app", FindingKind.UPDATE_AVAILABLE) in kinds
    assert ("broken", FindingKind.ERROR) in kinds  # one broken policy does not stop the others
    upd = next(f for f in s1.findings if f.kind is FindingKind.UPDATE_AVAILABLE)
    assert (upd.current, upd.latest) == ("1.0.0", "1.1.0")
    assert not any(f.kind is FindingKind.TAG_MOVED for f in s1.findings)
    assert METRICS.get_sample_value("driftd_image_update_available", {"environment": "prod", "image": "app"}) == 1
    assert s1.registry_requests > 0

    moved_110 = push_image(reg, repo, "1.1.0", content="two, rebuilt")  # re-pushed under the same tag
    delete_manifest(reg, repo, pinned)
    async with StateStore.open(tmp_path / "state") as store:  # a restart: digests come from the store
        poller = ImagePoller(cfg, store)
        try:
            s2 = await poller.poll(env, desired)
            s3 = await poller.poll(env, desired)
        finally:
            await poller.aclose()
    moved = [f for f in s2.findings if f.kind is FindingKind.TAG_MOVED]
    assert [(f.tag, f.old_digest, f.new_digest) for f in moved] == [("1.1.0", first_110, moved_110)]
    assert moved[0].alerting
    missing = [f for f in s2.findings if f.kind is FindingKind.DIGEST_MISSING]
    assert len(missing) == 1
    assert pinned in missing[0].current
    # Seen once, recorded: the next poll does not re-report the move.
    assert not any(f.kind is FindingKind.TAG_MOVED for f in s3.findings)


@pytest.mark.anyio
async def test_up_to_date_clears_the_metric(sandbox, tmp_path: Path) -> None:
    reg = sandbox.registry
    repo = f"t/engine-{uuid.uuid4().hex[:8]}"
    push_image(reg, repo, "2.0.0")
    cfg = _config(tmp_path, reg, [{"name": "web", "image": f"{reg}/{repo}", "semver": ">=2"}], env="stage")
    poller = ImagePoller(cfg, MemoryKeyValueStore())
    try:
        s = await poller.poll(cfg.environments[0], _desired(f"{reg}/{repo}:2.0.0"))
    finally:
        await poller.aclose()
    assert [f.kind for f in s.findings] == [FindingKind.UP_TO_DATE]
    assert METRICS.get_sample_value("driftd_image_update_available", {"environment": "stage", "image": "web"}) == 0
