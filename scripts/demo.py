"""The driftd demo (`make demo`): real servers, a real Git repository, real out-of-band changes.

1. starts the sandbox (kube-apiserver + etcd, moto, git daemon, Alertmanager + webhook receiver)
   in a temp dir, or reuses one (--sandbox DIR);
2. pushes examples/demo/ as a Git repository with two branches: staging (enforce) and prod (alert);
3. writes a driftd config and deploys Git once with `driftd sync`, as a CD pipeline would;
4. runs `driftd run`, waits for /readyz, and shows both environments in sync;
5. changes things behind Git's back: kubectl scale / set env / patch, and the AWS API;
6. shows what driftd saw (the drift, who made it), the revert in staging, the alerts
   Alertmanager delivered, a few metric lines;
7. stops driftd and tears everything down.

Lives under scripts/ (not in the driftd package) because it drives the test sandbox.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.sandbox import Sandbox, down, up  # noqa: E402

# ruff: noqa: S310  - URLs are the sandbox's and driftd's own loopback http endpoints

SAMPLE = ROOT / "examples" / "demo"
COLOR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")


class DemoFailed(Exception):
    pass


def say(text: str) -> None:
    print(("\033[1;36m==>\033[0m " if COLOR else "==> ") + text, flush=True)


def detail(text: str) -> None:
    print(textwrap.indent(text.rstrip("\n"), "    "), flush=True)


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 60.0, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = fn()
        except (OSError, ValueError, KeyError, subprocess.SubprocessError):
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


class Demo:
    def __init__(self, sb: Sandbox, work: Path) -> None:
        self.sb = sb
        self.work = work
        self.run_id = uuid.uuid4().hex[:4]
        self.ns = {"staging": f"demo-staging-{self.run_id}", "prod": f"demo-prod-{self.run_id}"}
        self.aws_env = {"staging": f"staging-{self.run_id}", "prod": f"prod-{self.run_id}"}
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.config = work / "driftd.toml"
        self.log = work / "driftd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.changed_at = 0.0
        self.env = {**os.environ, **sb.env(), "NO_COLOR": "1"}

    # --- steps ----------------------------------------------------------------------------

    def push_repository(self) -> str:
        repo = f"demo-envs-{self.run_id}"
        self.sb.new_bare_repo(repo)
        url = self.sb.git_repo_url(repo)
        say(f"Pushing the sample environment repository ({SAMPLE.relative_to(ROOT)}) to {url}")
        for branch in ("staging", "prod"):
            src = self.work / f"src-{branch}"
            shutil.copytree(SAMPLE / branch, src)
            git = ["git", "-C", str(src), "-c", "user.name=Platform Team", "-c", "user.email=platform@example.com"]
            for argv in (["init", "-q", "-b", branch], ["add", "-A"],
                         ["commit", "-q", "-m", f"{branch}: web app, config, assets bucket, feature flag"],
                         ["push", "-q", url, f"HEAD:refs/heads/{branch}"]):
                subprocess.run([*git, *argv], check=True, capture_output=True)
            files = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file() and ".git" not in p.parts)
            detail(f"branch {branch}: {', '.join(files)}")
        return url

    def write_config(self, repo_url: str) -> None:
        sb = self.sb
        self.config.write_text(f"""\
[daemon]
state_dir = "{self.work / 'state'}"
listen = "127.0.0.1:{self.port}"
log_format = "text"

[alertmanager]
urls = ["{sb.alertmanager}"]
resend_interval = "30s"
error_grace = "30s"

[[clusters]]
name = "sandbox"
kubeconfig = "{sb.kubeconfig}"

[[aws_accounts]]
name = "sandbox"
region = "{sb.aws_region}"
endpoint_url = "{sb.aws_endpoint}"
cloudtrail = false

[[repositories]]
name = "envs"
url = "{repo_url}"
poll_interval = "2s"

[[environments]]
name = "staging"
repository = "envs"
branch = "staging"
mode = "enforce"
interval = "5s"
severity = "warning"
  [environments.kubernetes]
  cluster = "sandbox"
  namespace = "{self.ns['staging']}"
  [environments.aws]
  account = "sandbox"
  parameters = {{ Env = "{self.aws_env['staging']}" }}
  unmanaged = false

[[environments]]
name = "prod"
repository = "envs"
branch = "prod"
mode = "alert"
interval = "5s"
severity = "critical"
  [environments.kubernetes]
  cluster = "sandbox"
  namespace = "{self.ns['prod']}"
  [environments.aws]
  account = "sandbox"
  parameters = {{ Env = "{self.aws_env['prod']}" }}
  unmanaged = false
""")
        say(f"Wrote {self.config}: staging in enforce mode, prod in alert mode, Alertmanager {sb.alertmanager}")

    def driftd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([sys.executable, "-m", "driftd", *args, "--config", str(self.config)],
                             capture_output=True, text=True, env=self.env, timeout=180, check=False)
        if check and out.returncode not in (0, 1):
            raise DemoFailed(f"driftd {' '.join(args)} exited {out.returncode}:\n{out.stderr[-3000:]}{out.stdout}")
        return out

    def deploy(self) -> None:
        say("Deploying Git to the sandbox once with `driftd sync` (what a CD pipeline would do)")
        for name, ns in self.ns.items():
            self.sb.kubectl("create", "namespace", ns)
            out = self.driftd("sync", "--env", name)
            detail(f"$ driftd sync --env {name}\n" + _tail(out.stdout, 12))
        for name in self.ns:
            out = self.driftd("check", "--env", name)
            detail(f"$ driftd check --env {name}\n" + _tail(out.stdout, 3))
            if out.returncode != 0:
                raise DemoFailed(f"after `driftd sync` {name} should be in sync")

    def start_daemon(self) -> None:
        say(f"Starting `driftd run` (HTTP API on {self.api}; log in {self.log})")
        self.proc = subprocess.Popen([sys.executable, "-m", "driftd", "run", "--config", str(self.config)],
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=self.env)
        wait_for("driftd's /readyz", lambda: self._alive() and http_status(self.api + "/readyz") == 200, 90)
        # Ready means every environment was checked once; the first check may still be waiting
        # for the first fetch. The demo wants to start from "in sync".
        envs = wait_for("both environments in sync", lambda: (
            (es := http_json(self.api + "/api/v1/environments")["environments"])
            and all(e["status"] == "in_sync" for e in es) and es), 90)
        for e in envs:
            detail(f"{e['name']:8} {e.get('mode', ''):8} {e['status']:8} {e['resources']} resources, "
                   f"revision {(e['revision'] or '-')[:10]}")

    def drift(self) -> None:
        say("Making out-of-band changes, the way people do during an incident")
        self.changed_at = time.time()
        st, pr = self.ns["staging"], self.ns["prod"]
        for argv, why in (
            (["-n", st, "scale", "deployment/web", "--replicas=6"], "staging: scale up by hand"),
            (["-n", st, "set", "env", "deployment/web", "DEBUG=1"], "staging: add an env var (not in Git)"),
            (["-n", pr, "set", "image", "deployment/web", "web=nginx:1.25-hotfix"], "prod: hot-fix an image"),
            (["-n", pr, "patch", "configmap/web-config", "--type=merge", "-p",
              '{"data":{"FEATURE_CHECKOUT_V2":"true"}}'], "prod: flip a feature flag"),
        ):
            self.sb.kubectl(*argv)
            detail(f"$ kubectl {' '.join(argv)}    # {why}")
        s3 = self.sb.boto3_client("s3")
        ssm = self.sb.boto3_client("ssm")
        prod_bucket = f"driftd-demo-{self.aws_env['prod']}-assets"
        s3.put_bucket_versioning(Bucket=prod_bucket, VersioningConfiguration={"Status": "Suspended"})
        detail(f"aws s3api put-bucket-versioning --bucket {prod_bucket} --versioning-configuration Status=Suspended")
        param = f"/demo/{self.aws_env['staging']}/checkout-v2"
        ssm.put_parameter(Name=param, Value="off", Type="String", Overwrite=True)
        detail(f"aws ssm put-parameter --name {param} --value off --overwrite")

    def show(self) -> None:
        say("What driftd saw (GET /api/v1/environments/prod)")

        def prod_drifts() -> list[dict[str, Any]] | None:
            r = http_json(self.api + "/api/v1/environments/prod")
            kinds = {(d["kind"], d["name"]) for d in r["drifts"]}
            want = {("Deployment", "web"), ("ConfigMap", "web-config"),
                    ("AWS::S3::Bucket", f"driftd-demo-{self.aws_env['prod']}-assets")}
            return r["drifts"] if want <= kinds else None

        for d in wait_for("the prod drifts in the API", prod_drifts, 90):
            who = d.get("changed_by") or "unknown (AWS: CloudTrail not available in the sandbox)"
            detail(f"{d['kind']} {d['namespace'] + '/' if d['namespace'] else ''}{d['name']}: {d['drift']}, "
                   f"changed by {who}")
            for c in d["changes"][:4]:
                detail(f"    {c['path']}: {json.dumps(c.get('expected'))} -> {json.dumps(c.get('actual'))}")

        say("The revert in staging (enforce): live state is back to Git")
        st = self.ns["staging"]

        def reverted() -> bool:
            dep = self.sb.kubectl_json("-n", st, "get", "deployment/web")
            env = dep["spec"]["template"]["spec"]["containers"][0].get("env", [])
            return bool(dep["spec"]["replicas"] == 2 and all(e["name"] != "DEBUG" for e in env))

        wait_for("staging's Deployment to be reverted", reverted, 90)
        dep = self.sb.kubectl_json("-n", st, "get", "deployment/web")
        detail(f"$ kubectl -n {st} get deployment/web  ->  replicas {dep['spec']['replicas']}, env "
               f"{[e['name'] for e in dep['spec']['template']['spec']['containers'][0].get('env', [])]}")
        ssm = self.sb.boto3_client("ssm")
        param = f"/demo/{self.aws_env['staging']}/checkout-v2"
        value = wait_for("the SSM parameter to be reverted",
                         lambda: (v := ssm.get_parameter(Name=param)["Parameter"]["Value"]) == "on" and v, 60)
        detail(f"$ aws ssm get-parameter --name {param}  ->  {value!r}")

        say("Alerts Alertmanager delivered (its webhook receiver's log)")
        mine = {"staging", "prod"}

        def alerts() -> dict[str, dict[str, Any]] | None:
            seen: dict[str, dict[str, Any]] = {}
            for body in self.sb.alerts():
                for a in body.get("alerts", []):
                    lab = a["labels"]
                    if lab.get("environment") in mine and a["startsAt"] >= _iso(self.changed_at - 1):
                        seen[f"{a['status']:8} {lab['alertname']:14} {lab['environment']:8} "
                             f"{lab.get('kind', '')} {lab.get('name', '')}"] = a
            names = {(a["labels"]["alertname"], a["labels"]["environment"]) for a in seen.values()}
            ok = {("DriftDetected", "prod"), ("DriftReverted", "staging")} <= names
            return seen if ok else None

        got = wait_for("DriftDetected (prod) and DriftReverted (staging) at the webhook", alerts, 60)
        for line, a in sorted(got.items()):
            detail(f"{line}  severity={a['labels'].get('severity')} changed_by={a['annotations'].get('changed_by')}")
        detail(f"(Alertmanager group_wait {self.sb.alertmanager_group_wait}; "
               f"generatorURL e.g. {next(iter(got.values()))['generatorURL']})")

        say("A few metric lines (GET /metrics)")
        with urllib.request.urlopen(self.api + "/metrics", timeout=5) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith(("driftd_environment_info", "driftd_drifted_resources", "driftd_reverts_total",
                                "driftd_alerts_sent_total", "driftd_alert_outbox_size")) and not line.endswith(" 0.0"):
                detail(line)

    def stop_daemon(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        say("Stopping driftd (SIGTERM)")
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
            detail(f"driftd exited with {code}")
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            detail("driftd did not stop within 30s; killed")

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoFailed(f"driftd run exited with {self.proc.returncode}:\n{_tail(self.log.read_text(), 30)}")
        return True

    def cleanup_live(self) -> None:
        for ns in self.ns.values():
            self.sb.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))


def _tail(text: str, n: int) -> str:
    lines = [x for x in text.splitlines() if x.strip()]
    return "\n".join(lines[-n:]) if lines else "(no output)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sandbox", metavar="DIR", default=os.environ.get("DRIFTD_SANDBOX"),
                   help="reuse a running sandbox (default: start one in a temp dir, stop it at the end)")
    p.add_argument("--keep", action="store_true", help="leave the work dir (config, logs, state) behind")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="driftd-demo-"))
    own_sandbox = not args.sandbox
    sb_dir = work / "sandbox" if own_sandbox else Path(args.sandbox)
    demo: Demo | None = None
    try:
        if own_sandbox:
            say(f"Starting the sandbox of real servers in {sb_dir} (first run builds kube-apiserver: minutes)")
            sb = up(sb_dir, log=sys.stdout)
        else:
            say(f"Reusing the sandbox in {sb_dir}")
            sb = Sandbox.load(sb_dir)
        detail(f"Kubernetes {sb.kube_version} at {sb.kube_server}; AWS (moto) at {sb.aws_endpoint}; "
               f"Git at {sb.git_url}; Alertmanager at {sb.alertmanager}")
        demo = Demo(sb, work)
        url = demo.push_repository()
        demo.write_config(url)
        demo.deploy()
        demo.start_daemon()
        demo.drift()
        demo.show()
        demo.stop_daemon()
        say(f"Demo finished in {time.monotonic() - t0:.0f}s")
        return 0
    except DemoFailed as e:
        print(f"demo failed: {e}", file=sys.stderr)
        if demo is not None and demo.log.exists():
            print("--- driftd log (tail) ---\n" + _tail(demo.log.read_text(), 40), file=sys.stderr)
        return 1
    finally:
        if demo is not None:
            demo.stop_daemon()
            if not own_sandbox:
                demo.cleanup_live()
        if own_sandbox and (sb_dir / "sandbox.json").exists():
            say("Tearing the sandbox down")
            down(sb_dir, log=sys.stdout)
        if args.keep:
            print(f"(kept {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
