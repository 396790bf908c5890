"""The confined tool runner's first home: now :mod:`driftd.sources.tools`, re-exported here for
the callers written against it (helm, sops, signatures). New code imports ``tools``."""

from __future__ import annotations

from .tools import DEFAULT_MAX_OUTPUT, ToolFailed, ToolResult, find_tool, run_tool, scrubbed_env

__all__ = ["DEFAULT_MAX_OUTPUT", "ToolFailed", "ToolResult", "find_tool", "run_tool", "scrubbed_env"]
