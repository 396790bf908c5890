"""Test helpers for registry tests: push images over plain HTTP, and a fault-injecting proxy.

Pushing follows the distribution API as a client would: blobs by POST (start upload) then
PUT (?digest=...), since docker-registry 2.8 refuses single-request uploads; then PUT the
manifest under a tag.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def _req(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
         auth: tuple[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    h = dict(headers or {})
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    r = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def upload_blob(host: str, repo: str, data: bytes, auth: tuple[str, str] | None = None) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    st, h, body = _req("POST", f"http://{host}/v2/{repo}/blobs/uploads/", b"", auth=auth)
    assert st == 202, (st, body)
    loc = h["Location"]
    if loc.startswith("/"):
        loc = f"http://{host}{loc}"
    sep = "&" if "?" in loc else "?"
    st, _, body = _req("PUT", f"{loc}{sep}digest={digest}", data,
                       {"Content-Type": "application/octet-stream"}, auth=auth)
    assert st == 201, (st, body)
    return digest


def push_image(host: str, repo: str, tag: str, *, content: str | None = None,
               auth: tuple[str, str] | None = None, media_type: str = OCI_MANIFEST) -> str:
    """Push a tiny image (one config blob, one layer) under repo:tag; returns the manifest digest.

    ``content`` makes the layer (and so the digest) distinct; re-pushing a tag with other content moves it.
    """
    layer = (content if content is not None else f"{repo}:{tag}").encode()
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                         "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()
    cfg_digest = upload_blob(host, repo, config, auth)
    layer_digest = upload_blob(host, repo, layer, auth)
    oci = media_type == OCI_MANIFEST
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json" if oci
                   else "application/vnd.docker.container.image.v1+json",
                   "digest": cfg_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar" if oci
                    else "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": layer_digest, "size": len(layer)}],
    }).encode()
    st, h, body = _req("PUT", f"http://{host}/v2/{repo}/manifests/{tag}", manifest,
                       {"Content-Type": media_type}, auth=auth)
    assert st == 201, (st, body)
    return h["Docker-Content-Digest"]


def delete_manifest(host: str, repo: str, digest: str, auth: tuple[str, str] | None = None) -> None:
    st, _, body = _req("DELETE", f"http://{host}/v2/{repo}/manifests/{digest}", auth=auth)
    assert st == 202, (st, body)


@dataclass
class FaultProxy:
    """An aiohttp reverse proxy in front of a real registry that can inject faults.

    - ``throttle_next``: answer the next N upstream-bound requests with 429 and ``Retry-After``;
    - ``page_size``: paginate tag lists like distribution v3 / Harbor (sorted, ``n`` capped at page_size,
      ``last``, and a ``Link: <...>; rel="next"`` header unless ``link`` is False): distribution 2.8
      itself ignores ``n`` for tags and always answers the whole list;
    - ``bearer``: act as a token-auth front: requests without a valid bearer token get a
      ``WWW-Authenticate: Bearer realm=<proxy>/token,service=...,scope=...`` challenge, and
      ``/token`` hands out tokens (checking basic credentials when ``token_user`` is set).
    """

    upstream: str  # host:port
    throttle_next: int = 0
    retry_after: str = "1"
    bearer: bool = False
    token_user: tuple[str, str] | None = None
    token_ttl: int = 300
    page_size: int | None = None
    link: bool = True
    delay: float = 0.0  # seconds before answering, to observe requests in flight
    inflight: int = 0
    max_inflight: int = 0
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status answered)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _tokens: set[str] = field(default_factory=set)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None
    host: str = ""

    async def start(self) -> FaultProxy:
        app = web.Application()
        app.router.add_get("/token", self._token)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.host = f"127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(auto_decompress=False)
        return self

    async def stop(self) -> None:
        if self._session:
            await self._session.close()
        if self._runner:
            await self._runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests.append(dict(request.query))
        if self.token_user:
            want = "Basic " + base64.b64encode(f"{self.token_user[0]}:{self.token_user[1]}".encode()).decode()
            if request.headers.get("Authorization") != want:
                return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        tok = hashlib.sha256(json.dumps([len(self._tokens), request.query.get("scope")]).encode()).hexdigest()
        self._tokens.add(tok)
        return web.json_response({"token": tok, "expires_in": self.token_ttl})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return await self._answer(request)
        finally:
            self.inflight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs
        if self.bearer and request.path != "/v2/":
            auth = request.headers.get("Authorization", "")
            if not (auth.startswith("Bearer ") and auth[7:] in self._tokens):
                repo = request.path.removeprefix("/v2/").rsplit("/", 2)[0]
                self.requests.append((request.method, path, 401))
                ch = (f'Bearer realm="http://{self.host}/token",service="fault-proxy",'
                      f'scope="repository:{repo}:pull"')
                return web.Response(status=401, headers={"WWW-Authenticate": ch})
        if self.throttle_next > 0:
            self.throttle_next -= 1
            self.requests.append((request.method, path, 429))
            return web.Response(status=429, headers={"Retry-After": self.retry_after}, text="slow down")
        assert self._session is not None
        if self.page_size and request.method == "GET" and request.path.endswith("/tags/list"):
            return await self._page(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("accept", "content-type")}
        body = await request.read()
        async with self._session.request(request.method, f"http://{self.upstream}{path}", headers=headers,
                                         data=body or None, allow_redirects=False) as up:
            data = await up.read()
            out_headers: dict[str, Any] = {k: v for k, v in up.headers.items()
                                           if k.lower() in ("content-type", "docker-content-digest", "link",
                                                            "location", "www-authenticate", "content-length")}
            self.requests.append((request.method, path, up.status))
            resp = web.Response(status=up.status, headers=out_headers)
            if request.method != "HEAD":
                resp.body = data
            return resp

    async def _page(self, request: web.Request) -> web.Response:
        assert self._session is not None
        async with self._session.get(f"http://{self.upstream}{request.path}") as up:
            if up.status != 200:
                self.requests.append((request.method, request.path_qs, up.status))
                return web.Response(status=up.status, body=await up.read())
            data = await up.json()
        tags = sorted(data.get("tags") or [])
        n = min(int(request.query.get("n", self.page_size)), self.page_size or 0)
        last = request.query.get("last")
        if last:
            tags = [t for t in tags if t > last]
        page, more = tags[:n], len(tags) > n
        headers = {}
        if more and self.link:
            headers["Link"] = f'<{request.path}?n={n}&last={page[-1]}>; rel="next"'
        self.requests.append((request.method, request.path_qs, 200))
        return web.json_response({"name": data.get("name"), "tags": page}, headers=headers)
