"""A sandbox of real servers on loopback ports for driftd's integration tests.

``python -m tests.sandbox up|down|status DIR``; in pytest, the ``sandbox`` fixture
(tests/conftest.py). See README.md in this directory.
"""

from .model import CommandError, Sandbox
from .procs import SandboxError
from .runner import (
    AlreadyRunning,
    down,
    reload_prometheus,
    restart_kube_apiserver,
    start_alertmanager,
    start_component,
    start_git,
    status,
    stop_alertmanager,
    stop_component,
    stop_git,
    up,
)

__all__ = [
    "AlreadyRunning",
    "CommandError",
    "Sandbox",
    "SandboxError",
    "down",
    "reload_prometheus",
    "restart_kube_apiserver",
    "start_alertmanager",
    "start_component",
    "start_git",
    "status",
    "stop_alertmanager",
    "stop_component",
    "stop_git",
    "up",
]
