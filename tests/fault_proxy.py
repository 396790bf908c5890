"""Fault-injecting reverse proxies in front of the sandbox's real kube-apiserver and moto.

The real API server never sends a malformed watch line or an event of an unexpected shape; a broken
proxy, load balancer or server build can. This proxy forwards every request (plain HTTP towards
driftd, the sandbox's admin client certificate towards the API server), streams watch responses line
by line, and injects the lines a test asks for at the start of the next watches of a resource path.

It runs its own event loop in a thread, so tests driving `driftd run` as a subprocess stay plain
blocking code. ``kubeconfig(path)`` writes a kubeconfig pointing at it.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

import aiohttp
from aiohttp import web

from tests.sandbox import Sandbox


@dataclass
class Injection:
    path: str  # a watch whose path contains this (e.g. "/namespaces/ns/configmaps") gets, at its start or ...
    line: bytes  # ... before its next event if it is already running, this line (a newline is added)
    times: int  # ... this many more times (-1: every time)


class _LoopThread:
    """A proxy's own event loop in a daemon thread: ``start`` runs the subclass's ``_start`` there and
    returns once it listens; ``stop`` closes the upstream session first (it ends watch streams, so their
    handlers return), then the server, then the loop."""

    thread_name: ClassVar[str]
    _loop: asyncio.AbstractEventLoop | None
    _thread: threading.Thread | None
    _runner: web.AppRunner | None
    _session: aiohttp.ClientSession | None

    async def _start(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name=self.thread_name)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    async def _stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class KubeFaultProxy(_LoopThread):
    thread_name = "kube-fault-proxy"

    sandbox: Sandbox
    injections: list[Injection] = field(default_factory=list)
    watches: list[str] = field(default_factory=list)  # path_qs of every watch request, in order
    injected: list[str] = field(default_factory=list)  # path of every watch that got an injected line
    write_delay: float = 0.0  # seconds each write waits before it is forwarded (a slow API server)
    # Every write the API server answered: (time.time() of the answer, method, path, status). This is the
    # server-side observation the audit tests compare the journal with.
    writes: list[tuple[float, str, str, int]] = field(default_factory=list)
    url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(self, path: str, line: bytes, times: int = 1) -> None:
        with self._lock:
            self.injections.append(Injection(path, line, times))

    def clear(self) -> None:
        with self._lock:
            self.injections.clear()

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: proxy\n  cluster:\n    server: {self.url}\n"
            "users:\n- name: anyone\n  user: {}\n"
            "contexts:\n- name: proxy\n  context: {cluster: proxy, user: anyone}\n"
            "current-context: proxy\n")
        return path

    # --- the proxy ----------------------------------------------------------------------------

    async def _start(self) -> None:
        sb = self.sandbox
        ctx = ssl.create_default_context(cafile=sb.kube_ca)
        ctx.load_cert_chain(sb.kube_client_cert, sb.kube_client_key)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0),
                                              auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    def _take(self, path: str) -> bytes | None:
        with self._lock:
            for inj in self.injections:
                if inj.path in path and inj.times != 0:
                    if inj.times > 0:
                        inj.times -= 1
                    self.injected.append(path)
                    return inj.line
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        watch = request.query.get("watch") in ("true", "1")
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("accept", "content-type")}
        body = await request.read()
        write = request.method != "GET" and "dryRun" not in request.query
        if write and self.write_delay:
            await asyncio.sleep(self.write_delay)
        up_url = self.sandbox.kube_server.rstrip("/") + request.path_qs
        async with self._session.request(request.method, up_url, headers=headers, data=body or None,
                                         allow_redirects=False) as up:
            if write:
                self.writes.append((time.time(), request.method, request.path, up.status))
            out_headers = {k: v for k, v in up.headers.items() if k.lower() in ("content-type",)}
            if not watch or up.status != 200:
                return web.Response(status=up.status, headers=out_headers, body=await up.read())
            self.watches.append(request.path_qs)
            resp = web.StreamResponse(status=200, headers=out_headers)
            await resp.prepare(request)
            bad = self._take(request.path)
            if bad is not None:
                await resp.write(bad + b"\n")
            try:
                while True:
                    line = await up.content.readline()
                    if not line:
                        break
                    bad = self._take(request.path)  # asked for while this watch runs: before its next event
                    if bad is not None:
                        await resp.write(bad + b"\n")
                    await resp.write(line)
            except (ConnectionError, aiohttp.ClientError):
                pass
            return resp


@dataclass
class AwsFaultProxy(_LoopThread):
    thread_name = "aws-fault-proxy"

    """A reverse proxy in front of the sandbox's moto server that rewrites the answers of chosen
    JSON-protocol operations (by ``X-Amz-Target``, e.g. ``AmazonSSM.GetParameters``): a well-formed
    answer of a shape an adapter does not expect, which moto itself never sends."""

    sandbox: Sandbox
    rewrite: dict[str, bytes] = field(default_factory=dict)  # X-Amz-Target -> answer body
    down: bool = False  # every connection is dropped without an answer: the endpoint is unreachable
    rewritten: list[str] = field(default_factory=list)
    url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def _handle(self, request: web.Request) -> web.Response:
        assert self._session is not None
        if self.down:
            assert request.transport is not None
            request.transport.abort()  # as a dead endpoint: the client sees the connection drop
            raise web.HTTPServiceUnavailable()
        target = request.headers.get("X-Amz-Target", "")
        body = await request.read()
        fake = self.rewrite.get(target)
        if fake is not None:
            self.rewritten.append(target)
            return web.Response(status=200, body=fake, headers={"Content-Type": "application/x-amz-json-1.1"})
        # Signed requests: forward every header as is (the Host too, it is part of the signature).
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "transfer-encoding")}
        up_url = self.sandbox.aws_endpoint.rstrip("/") + request.path_qs
        async with self._session.request(request.method, up_url, headers=headers, data=body or None,
                                         allow_redirects=False) as up:
            out = {k: v for k, v in up.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection")}
            return web.Response(status=up.status, headers=out, body=await up.read())
