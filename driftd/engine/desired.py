"""An environment's desired state, and its last good revision, for ``run`` and ``check`` alike.

A desired state that cannot be read (the repository cannot be fetched, the branch is gone, the tree
does not parse) puts the environment in ``error`` and is never acted on; the last good revision is
what the loader last read completely for the environment (``DesiredStateLoader.last_good_revision``,
the one record of it), and the environment keeps the state it had at that revision.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config
from ..sources.loader import ClusterInfoSource, LoadResult
from .pools import Sources, aws_context
from .reconciler import EnvRuntime


@dataclass(frozen=True)
class Refresh:
    """What one read of the environment's branch did to its runtime."""

    loaded: bool  # the runtime holds a readable desired state now
    changed: bool  # ... at another revision than before (or after an error): a full pass is due
    error: str | None = None  # why it could not be read
    last_good: str | None = None


def load_error(result: LoadResult) -> str:
    msg = result.error or "desired state could not be loaded"
    if result.problems:
        msg += ": " + "; ".join(str(p) for p in result.problems[:5])
        if len(result.problems) > 5:
            msg += f" (+{len(result.problems) - 5} more)"
    return msg


def desired_error_message(reason: str, last_good: str | None) -> str:
    """The environment's error while its desired state cannot be read: the reason, and what is kept."""
    if last_good is None:
        return f"desired state unavailable: {reason}"
    return (f"desired state unavailable: {reason}; keeping last good revision {last_good[:12]} "
            "(nothing is reverted or pruned until Git can be read)")


async def refresh(rt: EnvRuntime, sources: Sources, config: Config, *, fetch_error: str | None = None,
                  cluster: ClusterInfoSource | None = None) -> Refresh:
    """Read the environment's branch into ``rt``. ``fetch_error``: its repository's latest fetch failed, so
    nothing is read (an older cached tree must not pass for the branch's state). ``cluster``: what Helm
    releases render against (``TargetPool.cluster_info``)."""
    env = rt.settings
    if fetch_error is None:
        result = await sources.load(env, **aws_context(config, env), cluster=cluster)
        state, failed = result.state, load_error(result)
    else:
        state, failed = None, fetch_error
    if state is None:
        last_good = sources.loader.last_good_revision(env.name)
        rt.desired_error = desired_error_message(failed, last_good)
        return Refresh(loaded=False, changed=False, error=failed, last_good=last_good)
    changed = rt.desired is None or rt.desired.revision != state.revision or rt.desired_error is not None
    rt.set_desired(state)
    return Refresh(loaded=True, changed=changed, last_good=state.revision)
