"""Push webhooks (`POST /hooks/git`) against a real `driftd run` and the sandbox's git server and
kube-apiserver: a commit pushed to an enforce environment's branch goes live right after a signed
webhook, although the repository's poll interval is an hour (so the webhook did it; the timing is
bench/bench_hooks.py's); GitHub, GitLab
and Gitea/Forgejo requests verify, unverified/unknown ones are rejected and counted; rate limiting."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from driftd.hooks import TokenBucket, normalize_url
from tests.daemon_support import DaemonProc, GitRepo, deployment, wait_for, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

SECRET = "s3cret-webhook-key"


def test_normalize_url_matches_the_https_ssh_and_scp_forms_of_one_project() -> None:
    forms = ["https://git.example.com/Platform/envs.git", "ssh://git@git.example.com:2222/Platform/envs",
             "git@git.example.com:Platform/envs.git", "https://user:tok@git.example.com/Platform/envs/"]
    assert {normalize_url(u) for u in forms} == {"git.example.com/Platform/envs"}
    assert normalize_url("https://git.example.com/Platform/other.git") != normalize_url(forms[0])


def test_token_bucket() -> None:
    now = [0.0]
    b = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [b.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5  # one token back
    assert [b.take(), b.take()] == [True, False]


@dataclass
class Setup:
    sandbox: Sandbox
    daemon: DaemonProc
    repo: GitRepo
    ns: str

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.daemon.port}/hooks/git", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def metric(self, provider: str, result: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.daemon.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        line = f'driftd_webhook_requests_total{{provider="{provider}",result="{result}"}} '
        return next((float(x[len(line):]) for x in text.splitlines() if x.startswith(line)), 0.0)

    def replicas(self) -> int:
        return int(self.sandbox.kubectl_json("get", "deployment", "web", "-n", self.ns)["spec"]["replicas"])


def github(body: bytes, secret: str = SECRET, event: str = "push") -> dict[str, str]:
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": f"sha256={sig}"}


def payload(url: str, sha: str = "0" * 40) -> bytes:
    return json.dumps({"ref": "refs/heads/main", "after": sha, "repository": {"clone_url": url}}).encode()


@pytest.fixture(scope="module")
def setup(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("hooks")
    tag = uuid.uuid4().hex[:6]
    ns = f"hooks-{tag}"
    sandbox.kubectl("create", "namespace", ns)
    sandbox.kubectl("apply", "--server-side", "--field-manager=driftd", "-n", ns, "-f", "-",
                    input=yaml.safe_dump(deployment("web", 2)))
    repo = GitRepo(sandbox, f"hooks-{tag}.git", tmp / "work")
    repo.commit({"k8s/app.yaml": [deployment("web", 2)]})
    secret = tmp / "webhook-secret"
    secret.write_text(SECRET + "\n")
    envs = [{"name": "prod", "mode": "enforce", "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s"}}]
    state, port = tmp / "state", free_port()
    cfg = write_config(tmp / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=port, envs=envs,
                       poll="1h")
    text = cfg.read_text().replace('poll_interval = "1h"', f'poll_interval = "1h"\nwebhook_secret_file = "{secret}"')
    cfg.write_text(text)
    d = DaemonProc(cfg, state, port, tmp / "driftd.log").start()
    try:
        d.wait_checked("prod")
        yield Setup(sandbox, d, repo, ns)
    finally:
        assert d.stop() == 0, d.tail()
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.sandbox
@pytest.mark.slow
def test_a_signed_push_goes_live_at_once_although_the_poll_interval_is_an_hour(setup: Setup) -> None:
    assert setup.replicas() == 2
    sha = setup.repo.commit({"k8s/app.yaml": [deployment("web", 3)]}, message="scale to 3")
    time.sleep(2)  # no poll would see it for an hour: nothing happens without the webhook
    assert setup.replicas() == 2
    body = payload(setup.repo.url, sha)
    t0 = time.monotonic()
    status, answer = setup.post(body, github(body))
    assert (status, answer["result"]) == (202, "accepted"), answer
    wait_for(lambda: setup.replicas() == 3, 10, "the pushed commit live in the cluster")
    latency = time.monotonic() - t0
    print(f"\nwebhook -> commit live in the cluster: {latency:.2f}s (poll_interval 1h)")
    env = setup.daemon.environments()["prod"]
    wait_for(lambda: setup.daemon.environments()["prod"]["revision"] == sha, 5, "the new revision reported")
    assert env["status"] in ("in_sync", "drifted")
    # Figures are bench/bench_hooks.py's (webhook median 0.55 s, against 4.1 s polling every 5 s); here it
    # is enough that it happened long before any poll could have (the poll interval is an hour).
    assert latency < 60, f"{latency:.2f}s"
    assert setup.metric("github", "accepted") >= 1


@pytest.mark.sandbox
@pytest.mark.slow
def test_gitlab_and_gitea_verify_and_everything_else_is_rejected_and_counted(setup: Setup) -> None:
    body = payload(setup.repo.url)
    before = {(p, r): setup.metric(p, r) for p, r in (("github", "unverified"), ("unknown", "unknown"),
                                                  ("gitlab", "unverified"), ("gitea", "unverified"))}
    # GitLab: the token itself; Gitea/Forgejo: a bare hex HMAC.
    assert setup.post(body, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET})[1]["result"] == "accepted"
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert setup.post(body, {"X-Gitea-Event": "push", "X-Gitea-Signature": sig})[1]["result"] == "accepted"
    assert setup.post(body, {"X-Forgejo-Event": "push", "X-Forgejo-Signature": sig})[1]["result"] == "accepted"
    # Rejected: wrong secret, no signature, a signature of another body, an unknown sender, a wrong token.
    assert setup.post(body, github(body, secret="wrong"))[0] == 401
    assert setup.post(body, {"X-GitHub-Event": "push"})[0] == 401
    assert setup.post(body, github(b"{}"))[0] == 401
    assert setup.post(body, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"})[0] == 401
    assert setup.post(body, {"X-Gitea-Event": "push", "X-Gitea-Signature": "00" * 32})[0] == 401
    assert setup.post(body, {})[0] == 400
    # Verified but not for us / not a push.
    other = payload("https://git.example.com/someone/else.git")
    assert setup.post(other, github(other)) == (202, {"result": "ignored",
                                                      "detail": "no configured repository matches this push"})
    assert setup.post(body, github(body, event="ping"))[0] == 200
    counted = {k: setup.metric(*k) - v for k, v in before.items()}
    assert counted == {("github", "unverified"): 3, ("unknown", "unknown"): 1, ("gitlab", "unverified"): 1,
                       ("gitea", "unverified"): 1}
    # The secret never reaches the log.
    assert SECRET not in setup.daemon.log.read_text()


@pytest.mark.sandbox
@pytest.mark.slow
def test_rate_limited(setup: Setup) -> None:
    time.sleep(5)  # let the bucket refill from the other tests
    body = b"{}"
    codes = [setup.post(body, {"X-GitHub-Event": "push"})[0] for _ in range(40)]
    assert codes.count(429) >= 10
    assert codes[0] == 401
    assert setup.metric("github", "rate_limited") >= 10
