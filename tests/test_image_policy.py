"""Tag policies: pure selection over realistic tag lists, then the same against the real registry."""

from __future__ import annotations

import uuid

import pytest
from registry_support import push_image

from driftd.config import ImagePolicySettings
from driftd.policy.images import compile_policy, parse_image_ref
from driftd.sources.registry import Registries

# What a busy repository looks like: releases with and without v, pre-releases, build metadata,
# CI tags with dates and commit ids, signatures and attestations, floating tags.
REALISTIC = [
    "latest", "stable", "main", "1.0.0", "v1.1.0", "1.2.0-rc.1", "1.2.0", "1.2.1+build.45", "v1.10.0",
    "1.11.0-beta.2", "2.0.0-alpha.1", "1.9.7",
    "main-20240105T101010-abc1234", "main-20240312T080000-def5678", "main-20231231T235959-0123456",
    "sha256-0b6b8e3c.sig", "sha256-0b6b8e3c.att", "sha256-0b6b8e3c.sbom", "v1.12.0.sig",
    "build-9", "build-10", "build-100", "build-x",
    "2024-01-05", "2024-03-12", "2023-12-31",
]


def _policy(**kw: object):
    base = {"name": "p", "image": "ghcr.io/acme/app", "policy": "semver"}
    base.update(kw)
    return compile_policy(ImagePolicySettings(**base))  # type: ignore[arg-type]


def test_semver_policies() -> None:
    assert _policy(range="^1").select(REALISTIC).tag == "v1.10.0"
    assert _policy(range="~1.2").select(REALISTIC).tag == "1.2.1+build.45"
    assert _policy(range=">=1.11.0-0 <2").select(REALISTIC).tag == "1.11.0-beta.2"
    assert _policy(range="*").select(REALISTIC).tag == "v1.10.0"  # 2.0.0-alpha.1 is a pre-release
    assert _policy(range=">=3").select(REALISTIC) is None


def test_signatures_and_attestations_are_excluded() -> None:
    p = _policy(policy="alphabetical", range="")
    assert all(not t.endswith((".sig", ".att", ".sbom")) for t, _ in p.candidates(REALISTIC))
    # "v1.12.0.sig" would otherwise be the highest v-tag
    assert _policy(policy="alphabetical", pattern=r"^v(?P<v>.*)$").select(REALISTIC).tag == "v1.10.0"


def test_alphabetical_with_dates_in_tags() -> None:
    p = _policy(policy="alphabetical", pattern=r"^main-(?P<ts>\d{8}T\d{6})-[0-9a-f]{7}$")
    sel = p.select(REALISTIC)
    assert sel is not None
    assert (sel.tag, sel.key) == ("main-20240312T080000-def5678", "20240312T080000")
    assert _policy(policy="alphabetical", pattern=r"^\d{4}-\d{2}-\d{2}$").select(REALISTIC).tag == "2024-03-12"
    low = _policy(policy="alphabetical", order="desc", pattern=r"^main-(?P<ts>\d{8}T\d{6})-")
    assert low.select(REALISTIC).tag == "main-20231231T235959-0123456"


def test_numerical_orders_numbers_not_strings() -> None:
    p = _policy(policy="numerical", pattern=r"^build-(\d+)$")
    assert p.select(REALISTIC).tag == "build-100"  # alphabetically "build-9" would win
    assert _policy(policy="numerical", order="desc", pattern=r"^build-(\d+)$").select(REALISTIC).tag == "build-9"


def test_semver_with_pattern_key() -> None:
    tags = ["app-1.2.0", "app-1.10.0", "app-2.0.0-rc.1", "other-9.0.0"]
    assert _policy(range="^1", pattern=r"^app-(?P<version>.*)$").select(tags).tag == "app-1.10.0"


def test_is_newer_uses_policy_order() -> None:
    p = _policy(range="^1")
    assert p.is_newer("1.10.0", "v1.9.7")
    assert not p.is_newer("1.10.0", "1.10.0")
    assert p.is_newer("1.10.0", "latest")  # running a floating tag: the pinned release is the update
    n = _policy(policy="numerical", pattern=r"^build-(\d+)$")
    assert n.is_newer("100", "build-9")


def test_image_refs_follow_docker_naming() -> None:
    assert str(parse_image_ref("nginx")) == "docker.io/library/nginx"
    assert parse_image_ref("nginx:1.25").name == parse_image_ref("docker.io/library/nginx@sha256:" + "a" * 64).name
    assert parse_image_ref("bitnami/redis").repository == "bitnami/redis"
    r = parse_image_ref("localhost:5000/team/app:1.2.3")
    assert (r.registry, r.repository, r.tag) == ("localhost:5000", "team/app", "1.2.3")
    assert parse_image_ref("index.docker.io/library/nginx").name == "docker.io/library/nginx"
    assert parse_image_ref("docker.io/nginx").api_host == "registry-1.docker.io"
    for bad in ("", "UPPER/case", "app:bad tag", "app@sha256:xyz"):
        with pytest.raises(ValueError):  # noqa: PT011
            parse_image_ref(bad)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_each_policy_kind_against_the_real_registry(sandbox) -> None:
    repo = f"t/policy-{uuid.uuid4().hex[:8]}"
    # OCI tags cannot hold "+": build metadata only ever reaches a registry spelled otherwise.
    valid = [t for t in REALISTIC if "+" not in t] + ["1.2.2_build.46"]
    for t in valid:
        push_image(sandbox.registry, repo, t, content="same")
    async with Registries() as regs:
        tags = await regs.client(sandbox.registry).list_tags(repo)
    assert sorted(tags) == sorted(valid)
    image = f"{sandbox.registry}/{repo}"
    cases = [
        ({"policy": "semver", "range": ">=1.2 <2"}, "v1.10.0"),
        ({"policy": "semver", "range": "~1.2.0"}, "1.2.0"),
        ({"policy": "semver", "range": "~1.2.0", "pattern": r"^(?P<v>[\d.]+)(?:_build\.\d+)?$"}, "1.2.2_build.46"),
        ({"policy": "alphabetical", "pattern": r"^main-(?P<ts>\d{8}T\d{6})-"}, "main-20240312T080000-def5678"),
        ({"policy": "alphabetical", "pattern": r"^\d{4}-\d{2}-\d{2}$"}, "2024-03-12"),
        ({"policy": "numerical", "pattern": r"^build-(?P<n>\d+)$"}, "build-100"),
    ]
    for kw, want in cases:
        p = compile_policy(ImagePolicySettings(name="p", image=image, **kw))  # type: ignore[arg-type]
        sel = p.select(tags)
        assert sel is not None
        assert sel.tag == want, kw
