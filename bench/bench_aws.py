"""AWS check cost against moto: 1,000 security groups, 100 buckets, 200 roles, 500 parameters.

Prints API calls per check (by operation) against the minimum possible for
these types, wall time per check, and peak RSS of this process (moto runs in a
separate process, so its memory is not counted).

    .venv/bin/python bench/bench_aws.py [--sgs 1000 --buckets 100 --roles 200 --params 500]

Uses the sandbox's moto when DRIFTD_SANDBOX points at a running sandbox, else starts its own.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from driftd.config import AwsAccountSettings, AwsEnvSettings, EnvironmentSettings
from driftd.model import AwsDeclaration, DesiredState, ResourceKey, TargetKind
from driftd.targets.aws.target import AwsTarget
from tests.sandbox.procs import free_port

REGION = "us-east-1"


def start_moto() -> tuple[str, subprocess.Popen[bytes] | None]:
    sb = os.environ.get("DRIFTD_SANDBOX")
    if sb:
        p = Path(sb)
        data = json.loads((p if p.name == "sandbox.json" else p / "sandbox.json").read_text())
        return str(data["aws_endpoint"]), None
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return f"http://127.0.0.1:{port}", proc


def key(kind: str, name: str, region: str = REGION) -> ResourceKey:
    return ResourceKey(TargetKind.AWS, kind, name, region)


def populate(endpoint: str, run: str, n_sg: int, n_b: int, n_r: int, n_p: int) -> list[AwsDeclaration]:
    def client(service: str) -> Any:
        # moto's EC2 backend is not thread-safe: it answers 500 now and then under concurrency; retry those.
        return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                            config=Config(retries={"mode": "standard", "max_attempts": 8}))

    ec2, s3, iam, ssm = client("ec2"), client("s3"), client("iam"), client("ssm")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}
    decls: list[AwsDeclaration] = []
    jobs: list[Any] = []
    ec2_jobs: list[Any] = []  # moto's EC2 backend answers 500 under concurrent writes: one thread for it
    for i in range(n_sg):
        name = f"sg-{run}-{i}"
        props = {"GroupName": name, "GroupDescription": "bench",
                 "SecurityGroupIngress": [{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                                           "CidrIp": f"10.{i // 256}.{i % 256}.0/24"}]}
        decls.append(AwsDeclaration(key("AWS::EC2::SecurityGroup", name), f"Sg{i}", "AWS::EC2::SecurityGroup", props))

        def sg(name: str = name, i: int = i) -> None:
            gid = ec2.create_security_group(GroupName=name, Description="bench")["GroupId"]
            ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                 "IpRanges": [{"CidrIp": f"10.{i // 256}.{i % 256}.0/24"}]}])
        ec2_jobs.append(sg)
    for i in range(n_b):
        name = f"b-{run}-{i}"
        props = {"BucketName": name, "VersioningConfiguration": {"Status": "Enabled"},
                 "PublicAccessBlockConfiguration": {k: True for k in ("BlockPublicAcls", "BlockPublicPolicy",
                                                                      "IgnorePublicAcls", "RestrictPublicBuckets")}}
        decls.append(AwsDeclaration(key("AWS::S3::Bucket", name), f"B{i}", "AWS::S3::Bucket", props))

        def bucket(name: str = name, props: dict = props) -> None:
            s3.create_bucket(Bucket=name)
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            s3.put_public_access_block(Bucket=name,
                                       PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"])
        jobs.append(bucket)
    for i in range(n_r):
        name = f"r-{run}-{i}"
        props = {"RoleName": name, "AssumeRolePolicyDocument": trust, "Description": "bench",
                 "MaxSessionDuration": 3600}
        decls.append(AwsDeclaration(key("AWS::IAM::Role", name), f"R{i}", "AWS::IAM::Role", props))
        jobs.append(lambda name=name: iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), Description="bench"))
    for i in range(n_p):
        name = f"/{run}/p{i}"
        props = {"Name": name, "Type": "String", "Value": f"v{i}"}
        decls.append(AwsDeclaration(key("AWS::SSM::Parameter", name), f"P{i}", "AWS::SSM::Parameter", props))
        jobs.append(lambda name=name, i=i: ssm.put_parameter(Name=name, Value=f"v{i}", Type="String"))
    with ThreadPoolExecutor(4) as pool:
        serial = pool.submit(lambda: [f() for f in ec2_jobs])
        list(pool.map(lambda f: f(), jobs))
        serial.result()
    return decls


def minimum(n_sg: int, n_b: int, n_r: int, n_p: int, bucket_props: int = 2) -> dict[str, int]:
    """Fewest calls any client needs to read the declared properties of these resources."""
    return {"ec2 (DescribeSecurityGroups, 1,000/page)": math.ceil(n_sg / 1000),
            "s3 (ListBuckets + one Get per bucket and property)": 1 + n_b * bucket_props,
            "iam (ListRoles, 1,000/page)": math.ceil(n_r / 1000),
            "ssm (GetParameters, 10/call)": math.ceil(n_p / 10)}


async def measure(endpoint: str, decls: list[AwsDeclaration], unmanaged: bool, rounds: int,
                  baselines: bool = False) -> None:
    target = AwsTarget(AwsAccountSettings(name="bench", region=REGION, endpoint_url=endpoint, concurrency=16,
                                          cloudtrail=False))
    env = EnvironmentSettings(name="bench", repository="r", branch="main",
                              aws=AwsEnvSettings(account="bench", unmanaged=unmanaged, baselines=baselines))
    desired = DesiredState(revision="r", aws=tuple(decls))
    try:
        for i in range(rounds):
            t0 = time.perf_counter()
            result = await target.check(env, desired, inventory=frozenset())
            wall = time.perf_counter() - t0
            modified = sum(1 for d in result.drifts if str(d.drift) == "modified")
            missing = sum(1 for d in result.drifts if str(d.drift) == "missing")
            print(f"  round {i + 1}: {wall:6.2f} s  {result.api_calls} calls  {result.resources} resources  "
                  f"modified={modified} missing={missing} errors={len(result.errors)}")
        print("  calls by operation (last round):")
        for op, n in sorted(target.last_calls.items()):
            print(f"    {op:45s} {n:5d}")
    finally:
        await target.aclose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sgs", type=int, default=1000)
    ap.add_argument("--buckets", type=int, default=100)
    ap.add_argument("--roles", type=int, default=200)
    ap.add_argument("--params", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    endpoint, proc = start_moto()
    try:
        run = uuid.uuid4().hex[:6]
        t0 = time.perf_counter()
        decls = populate(endpoint, run, a.sgs, a.buckets, a.roles, a.params)
        print(f"populated moto with {len(decls)} resources in {time.perf_counter() - t0:.1f} s ({endpoint})")
        mins = minimum(a.sgs, a.buckets, a.roles, a.params)
        print(f"minimum possible calls per check: {sum(mins.values())}")
        for k, v in mins.items():
            print(f"    {k:50s} {v:5d}")
        print("check, declared only (unmanaged = false, baselines = false):")
        anyio.run(measure, endpoint, decls, False, a.rounds)
        print("check with the unmanaged view (unmanaged = true, no tag filter):")
        anyio.run(measure, endpoint, decls, True, 1)
        # Baselines read what templates leave out (diff.baseline): more calls per bucket and role, by design.
        print("check, declared only, with baselines of undeclared properties (baselines = true):")
        anyio.run(measure, endpoint, decls, False, 1, True)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS (this process, boto3 populating included): {rss:.0f} MiB")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
