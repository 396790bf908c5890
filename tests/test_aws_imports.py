"""The AWS target's modules import each other without cycles (a cycle makes import order matter: the
module imported first sees a half-initialised other one)."""

from __future__ import annotations

import subprocess
import sys

import grimp


def test_no_import_cycle_inside_the_aws_target() -> None:
    graph = grimp.build_graph("driftd")  # TYPE_CHECKING imports included: they are cycles to mypy too
    pkg = "driftd.targets.aws"
    cycles = sorted(
        (a, b) for a in graph.modules if a.startswith(pkg)
        for b in graph.find_modules_directly_imported_by(a)
        if b.startswith(pkg) and graph.find_shortest_chain(importer=b, imported=a) is not None)
    assert cycles == []


def test_api_error_is_one_type_wherever_it_is_imported_from() -> None:
    # Each import order in a fresh interpreter: session first, base first, ECR first.
    for first in ("session", "base", "ecr_images", "errors"):
        code = (f"import driftd.targets.aws.{first}\n"
                "from driftd.targets.aws import base, ecr_images, errors, session\n"
                "assert base.ApiError is errors.ApiError is session.ApiError is ecr_images.ApiError\n")
        subprocess.run([sys.executable, "-c", code], check=True)
