"""Push tiny OCI images to a distribution registry over plain HTTP (the v2 API, no client library).

Uploads are POST then PUT (distribution 2.8 has no single-request upload).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# What a client must Accept to get any modern manifest back unconverted.
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def request(
    method: str,
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
) -> Response:
    """One HTTP request; non-2xx statuses are returned, not raised."""
    hdrs = dict(headers or {})
    if auth is not None:
        hdrs["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        with e:
            return Response(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def _check(resp: Response, want: int, what: str) -> Response:
    if resp.status != want:
        raise RuntimeError(f"{what}: HTTP {resp.status} (wanted {want}): {resp.body[:300]!r}")
    return resp


def push_blob(registry: str, repo: str, data: bytes, auth: tuple[str, str] | None = None) -> str:
    """POST an upload session, then PUT the whole blob with ?digest=. Returns the digest."""
    dg = digest(data)
    start = _check(
        request("POST", f"http://{registry}/v2/{repo}/blobs/uploads/", data=b"", auth=auth),
        202,
        "start upload",
    )
    location = urllib.parse.urljoin(f"http://{registry}/", start.headers["location"])
    sep = "&" if "?" in location else "?"
    _check(
        request(
            "PUT",
            f"{location}{sep}digest={urllib.parse.quote(dg)}",
            data=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
            auth=auth,
        ),
        201,
        "finish upload",
    )
    return dg


def tar_gz(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    """(gzipped tar, uncompressed tar) with deterministic metadata."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, 0
            tar.addfile(info, io.BytesIO(content))
    plain = raw.getvalue()
    return gzip.compress(plain, mtime=0), plain


def push_image(
    registry: str,
    repo: str,
    tag: str,
    files: dict[str, bytes] | None = None,
    auth: tuple[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    """Push a one-layer linux/amd64 OCI image; returns the manifest digest (what HEAD reports)."""
    layer, plain = tar_gz(files or {"hello.txt": f"{repo}:{tag}\n".encode()})
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": labels or {}},
            "rootfs": {"type": "layers", "diff_ids": [digest(plain)]},
        },
        sort_keys=True,
    ).encode()
    layer_dg = push_blob(registry, repo, layer, auth)
    config_dg = push_blob(registry, repo, config, auth)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_dg, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_dg, "size": len(layer)}],
        },
        sort_keys=True,
    ).encode()
    resp = _check(
        request(
            "PUT",
            f"http://{registry}/v2/{repo}/manifests/{tag}",
            data=manifest,
            headers={"Content-Type": OCI_MANIFEST},
            auth=auth,
        ),
        201,
        "put manifest",
    )
    dg = digest(manifest)
    if resp.headers.get("docker-content-digest") != dg:
        raise RuntimeError(f"registry reports {resp.headers.get('docker-content-digest')}, computed {dg}")
    return dg


def head_manifest(registry: str, repo: str, ref: str, auth: tuple[str, str] | None = None) -> Response:
    """HEAD a manifest with a full Accept header (Docker-Content-Digest is in the headers)."""
    return request(
        "HEAD", f"http://{registry}/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT}, auth=auth
    )
