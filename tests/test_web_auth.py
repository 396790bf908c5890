"""The web page under the API's access rules (issue 14's bearer token): with ``daemon.api_token_file`` the
page, its script and its event stream need the token; a browser presents it once through /login and
keeps it as an HttpOnly, SameSite=Strict cookie, accepted for GET only. /hooks/git stays open (its
requests are authenticated by their signature). In-process server, real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import anyio
import pytest

from driftd.server import serve
from tests.alerting_support import FakeStatus, daemon, env, report
from tests.sandbox.procs import free_port

TOKEN = "web-" + "b" * 40


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[str]:
    token = tmp_path / "api-token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    status = FakeStatus()
    status.items = [report(env("prod"))]
    port = free_port()
    settings = replace(daemon(tmp_path, f"127.0.0.1:{port}"), api_token_file=token)
    async with anyio.create_task_group() as tg:
        await tg.start(serve, settings, status)
        yield f"http://127.0.0.1:{port}"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_page_needs_the_token_and_a_browser_signs_in_once(served: str) -> None:
    html = {"Accept": "text/html"}
    # unsafe=True: aiohttp's jar otherwise refuses cookies of an IP address host (browsers keep them).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        for path in ("/", "/events", "/static/app.js", "/?partial=1"):
            async with s.get(served + path, allow_redirects=False) as r:
                assert r.status == 401, path
        # A browser is sent to the sign-in form (no open redirect: only local paths come back).
        async with s.get(served + "/?env=prod", headers=html, allow_redirects=False) as r:
            assert r.status == 303
            loc = urlsplit(r.headers["Location"])
            assert (loc.path, parse_qs(loc.query)["next"]) == ("/login", ["/?env=prod"])
        async with s.get(served + "/login?next=/") as r:
            assert r.status == 200
            assert 'type="password" name="token"' in await r.text()
        async with s.get(served + "/static/style.css") as r:
            assert r.status == 200  # the sign-in form's stylesheet
        async with s.post(served + "/login", data={"token": "wrong", "next": "/"}, allow_redirects=False) as r:
            assert r.status == 401
            assert "not valid" in await r.text()
        assert not s.cookie_jar.filter_cookies(served)
        async with s.post(served + "/login", data={"token": TOKEN, "next": "//evil.example/"},
                          allow_redirects=False) as r:
            assert r.status == 303
            assert r.headers["Location"] == "/"
            cookie = r.cookies["driftd_session"]
            assert cookie["httponly"]
            assert cookie["samesite"] == "Strict"
        async with s.get(served + "/", headers=html) as r:
            assert r.status == 200
            assert 'data-env="prod"' in await r.text()
        async with s.get(served + "/api/v1/environments") as r:
            assert r.status == 200  # the same token, the same rules
        # The cookie never authorizes a write (cross-site requests cannot use it anyway: SameSite=Strict).
        async with s.post(served + "/api/v1/environments") as r:
            assert r.status == 401
    async with aiohttp.ClientSession() as s:
        async with s.get(served + "/", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200
        # Open: a webhook is authenticated by its signature, not the token (no hooks wired here: 404, not 401).
        async with s.post(served + "/hooks/git", data=b"{}") as r:
            assert r.status == 404


# Each of these is read by a browser as another host: a tab or newline is dropped from a Location, a
# backslash is a slash. The signed-in browser must land on "/" for every one of them.
HOSTILE_NEXT = ("//evil.example/", "/\t/evil.example", "/\n/evil.example", "/\\evil.example",
                "\\\\evil.example", "https://evil.example/", "/ /evil.example", "javascript:alert(1)")


@pytest.mark.anyio
async def test_sign_in_never_redirects_off_this_server(served: str) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        # The exact request of the review: %09 in the query string is a tab once decoded.
        async with s.post(served + "/login?next=/%09/evil.example", data={"token": TOKEN, "next": "/\t/evil.example"},
                          allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (303, "/")
        for nxt in HOSTILE_NEXT:
            async with s.post(served + "/login", data={"token": TOKEN, "next": nxt}, allow_redirects=False) as r:
                assert (r.status, r.headers["Location"]) == (303, "/"), nxt
            async with s.get(served + "/login", params={"next": nxt}) as r:
                assert "evil.example" not in await r.text(), nxt
        # A local path with a query and a fragment survives.
        async with s.post(served + "/login", data={"token": TOKEN, "next": "/?env=prod#drifts"},
                          allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (303, "/?env=prod#drifts")
