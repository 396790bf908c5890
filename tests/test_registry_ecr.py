"""ECR through the AWS API (moto's ECR in the sandbox): tags, digests, moved tags, missing images."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest

from driftd.config import AwsAccountSettings
from driftd.targets.aws.ecr_images import EcrTagSource, registry_id_from_host
from driftd.targets.aws.session import AccountSession


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _put(ecr, repo: str, tag: str, content: str) -> str:
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"digest": "sha256:" + hashlib.sha256(content.encode()).hexdigest(),
                                      "size": 1, "mediaType": "application/vnd.oci.image.config.v1+json"},
                           "layers": []})
    digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    # moto only reports the manifest digest when given one (otherwise it invents its own).
    ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag, imageDigest=digest)
    return digest


def test_registry_id_from_host() -> None:
    assert registry_id_from_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com") == "123456789012"
    assert registry_id_from_host("ghcr.io") is None


@pytest.mark.anyio
async def test_ecr_tags_digests_and_moved_tag(sandbox, monkeypatch) -> None:
    for k, v in sandbox.env().items():
        monkeypatch.setenv(k, v)
    ecr = sandbox.boto3_client("ecr")
    repo = f"team/app-{uuid.uuid4().hex[:6]}"
    ecr.create_repository(repositoryName=repo)
    digests = {t: _put(ecr, repo, t, f"content {t}") for t in ("1.0.0", "1.1.0", "v2.0.0-rc.1")}
    session = AccountSession(AwsAccountSettings(name="a", region=sandbox.aws_region,
                                                endpoint_url=sandbox.aws_endpoint))
    try:
        src = EcrTagSource(session, "123456789012.dkr.ecr.us-east-1.amazonaws.com")
        assert src.registry_id == "123456789012"
        # moto's default account is 123456789012, so registryId matches it.
        assert await src.list_tags(repo) == sorted(digests)
        assert await src.get_digest(repo, "1.1.0") == digests["1.1.0"]  # from the listing, no call
        assert await src.get_digest(repo, "9.9.9") is None
        moved = _put(ecr, repo, "1.1.0", "rebuilt")
        src.cache_ttl = 0  # force a fresh DescribeImages
        assert await src.get_digest(repo, "1.1.0") == moved != digests["1.1.0"]
        assert await src.get_digest(repo, digests["1.0.0"]) == digests["1.0.0"]
        ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": digests["1.0.0"]}])
        assert await src.get_digest(repo, digests["1.0.0"]) is None
        assert "ecr:DescribeImages" in session.seen_operations
    finally:
        await session.aclose()
