"""Image policies for one environment: poll registries, compare with Git, catch moved tags, write back.

Per ``[[environments.images]]`` policy, one poll:

1. lists the repository's tags (OCI registry, or ECR through the AWS API when the registry is
   configured with ``aws_account``) and selects the policy's latest tag and its digest;
2. reads the versions the environment declares (container images in its desired manifests);
3. always: compares the digest of every tag it looks at with the one last seen (kept in the
   state store, so a restart does not re-alert): a changed digest is a moved tag; and checks
   that images pinned by digest still exist;
4. ``report``: records whether an update is available (metric ``driftd_image_update_available``);
   ``write-back``: rewrites the fields marked with setter comments on the environment's branch,
   in one commit for all of the environment's write-back policies. Modes hold here too: an
   ``observe`` (or ``dry_run``) environment never pushes; its finding is ``would_write_back``,
   listing the lines the commit would change on the branch's current head.

One broken policy (bad image, unreachable registry) yields an ``error`` finding; the others go on.
Alerting is the caller's: ``ImageFinding.alerting`` says which findings deserve one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio

from .. import journal
from ..config import Config, EnvironmentSettings
from ..errors import DriftdError
from ..log import get_logger
from ..metrics import image_update_available, remove_series
from ..model import DesiredState, Mode
from ..policy.images import FindingKind, ImageFinding, ImagePolicy, ImageRef, compile_policy, parse_image_ref
from ..policy.setters import ImageUpdate, SetterError, apply_setters
from ..sources.git_writeback import PushAuth, WriteBackResult, commit_and_push
from ..sources.registry import Registries, TagSource, count_requests
from ..state import AuditEvent, EventKind, StateStore
from .protocols import ImageFindingListener

if TYPE_CHECKING:  # imported when an ECR registry is polled: aioboto3/botocore cost ~0.4 s to import
    from ..targets.aws.ecr_images import EcrTagSource
    from ..targets.aws.session import AccountSession

log = get_logger(__name__)

DIGEST_NAMESPACE = "registry-digests"
_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


class KeyValueStore(Protocol):
    """The part of driftd.state.StateStore this module needs."""

    async def kv_get(self, namespace: str, key: str) -> str | None: ...

    async def kv_put(self, namespace: str, key: str, value: str) -> None: ...


class MemoryKeyValueStore:
    """For the one-shot CLI and tests: forgets everything at exit."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], str] = {}

    async def kv_get(self, namespace: str, key: str) -> str | None:
        return self.data.get((namespace, key))

    async def kv_put(self, namespace: str, key: str, value: str) -> None:
        self.data[(namespace, key)] = value


def declared_images(desired: DesiredState | None) -> Iterator[tuple[str, str]]:
    """(image reference, source file) of every container in the desired Kubernetes objects."""
    if desired is None:
        return
    for obj in desired.kubernetes:
        for ref in _walk_images(obj.body):
            yield ref, obj.source


def _walk_images(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        for k, v in node.items():
            if k in _CONTAINER_LISTS and isinstance(v, list):
                for c in v:
                    if isinstance(c, Mapping) and isinstance(c.get("image"), str):
                        yield c["image"]
            else:
                yield from _walk_images(v)
    elif isinstance(node, list):
        for x in node:
            yield from _walk_images(x)


@dataclass
class PollStats:
    policies: int = 0
    registry_requests: int = 0
    findings: list[ImageFinding] = field(default_factory=list)
    write_back: WriteBackResult | None = None


class ImagePoller:
    """Owns the registry clients and AWS sessions for image polling; ``aclose()`` releases them."""

    def __init__(self, config: Config, store: KeyValueStore, *, registries: Registries | None = None,
                 cache_dir: Path | None = None, aws_sessions: Mapping[str, AccountSession] | None = None) -> None:
        self.config = config
        self.store = store
        self.registries = registries or Registries(config.registries)
        self.cache_dir = cache_dir or (config.daemon.state_dir / "writeback")
        self._aws = dict(aws_sessions or {})
        self._own_aws: list[AccountSession] = []
        self._ecr: dict[str, EcrTagSource] = {}

    async def aclose(self) -> None:
        await self.registries.aclose()
        for s in self._own_aws:
            await s.aclose()

    def tag_source(self, image: ImageRef) -> TagSource:
        s = self.registries.settings(image.registry)
        if s is not None and s.aws_account:
            src = self._ecr.get(image.registry)
            if src is None:
                from ..targets.aws.ecr_images import EcrTagSource
                from ..targets.aws.session import AccountSession

                session = self._aws.get(s.aws_account)
                if session is None:
                    session = AccountSession(self.config.aws_accounts[s.aws_account])
                    self._aws[s.aws_account] = session
                    self._own_aws.append(session)
                src = self._ecr[image.registry] = EcrTagSource(session, image.registry)
            return src
        return self.registries.client(image.registry)

    # -- one environment -----------------------------------------------------------------

    async def poll(self, env: EnvironmentSettings, desired: DesiredState | None,
                   now: datetime | None = None) -> PollStats:
        """Run every image policy of ``env``; never raises for one policy's failure."""
        now = now or datetime.now(UTC)
        stats = PollStats(policies=len(env.images))
        with count_requests() as n:
            await self._poll(env, desired, now, stats)
        stats.registry_requests = n[0]
        policies = {s.name for s in env.images}  # a policy removed from the config: its series goes too
        remove_series(image_update_available, ("environment", "image"),
                      lambda labels: labels["environment"] == env.name and labels["image"] not in policies)
        for f in stats.findings:
            if f.kind in (FindingKind.TAG_MOVED, FindingKind.DIGEST_MISSING, FindingKind.UPDATE_AVAILABLE,
                          FindingKind.WRITTEN_BACK, FindingKind.WOULD_WRITE_BACK, FindingKind.WRITE_BACK_FAILED):
                log.info(f"images.{f.kind}", **{k: v for k, v in f.to_dict().items() if k != "kind"})
        return stats

    async def _poll(self, env: EnvironmentSettings, desired: DesiredState | None, now: datetime,
                    stats: PollStats) -> None:
        updates: dict[str, ImageUpdate] = {}
        pending: list[tuple[ImagePolicy, str, str | None]] = []
        results: list[list[ImageFinding]] = [[] for _ in env.images]
        declared = list(declared_images(desired))

        async def one(i: int) -> None:
            s = env.images[i]
            try:
                policy = compile_policy(s)
            except ValueError as e:
                results[i].append(ImageFinding(env.name, s.name, s.image, FindingKind.ERROR, message=str(e), at=now))
                return
            try:
                out, upd = await self._poll_policy(env, policy, declared, now)
            except DriftdError as e:
                log.warning("images.poll_failed", environment=env.name, policy=s.name, error=str(e))
                out = [ImageFinding(env.name, s.name, policy.image.name, FindingKind.ERROR, message=str(e), at=now)]
                upd = None
            results[i].extend(out)
            if upd is not None and policy.action == "write-back":
                updates[policy.name] = upd[0]
                pending.append((policy, upd[0].tag, upd[1]))

        async with anyio.create_task_group() as tg:
            for i in range(len(env.images)):
                tg.start_soon(one, i)
        for r in results:
            stats.findings.extend(r)
        if updates:
            stats.findings.extend(await self._write_back(env, updates, pending, stats, now))

    async def _poll_policy(self, env: EnvironmentSettings, policy: ImagePolicy, declared: list[tuple[str, str]],
                           now: datetime) -> tuple[list[ImageFinding], tuple[ImageUpdate, str | None] | None]:
        src = self.tag_source(policy.image)
        repo = policy.image.repository
        name = policy.image.name
        findings: list[ImageFinding] = []
        tags = await src.list_tags(repo)
        sel = policy.select(tags)
        current = [parse_image_ref(r) for r, _ in declared if _names(r, policy.image)]
        current_tags = sorted({c.tag for c in current if c.tag})
        # Digests of the tags that matter: the policy's pick and what the environment runs.
        watch = sorted(set(current_tags) | ({sel.tag} if sel else set()))
        digests: dict[str, str | None] = {}

        async def fetch(tag: str) -> None:
            digests[tag] = await src.get_digest(repo, tag)

        async with anyio.create_task_group() as tg:
            for t in watch:
                tg.start_soon(fetch, t)
        for t in watch:
            d = digests.get(t)
            if d is None:
                continue
            key = f"{env.name}|{name}:{t}"
            seen = await self.store.kv_get(DIGEST_NAMESPACE, key)
            if seen is not None and seen != d:
                findings.append(ImageFinding(env.name, policy.name, name, FindingKind.TAG_MOVED, tag=t,
                                             old_digest=seen, new_digest=d, at=now,
                                             message=f"tag {t} now points to {d} (was {seen})"))
            if seen != d:
                await self.store.kv_put(DIGEST_NAMESPACE, key, d)
        for c in current:
            if c.digest and await src.get_digest(repo, c.digest) is None:
                findings.append(ImageFinding(env.name, policy.name, name, FindingKind.DIGEST_MISSING,
                                             current=str(c), at=now,
                                             message=f"{c.digest} no longer exists in {name}"))
        if sel is None:
            image_update_available.labels(environment=env.name, image=policy.name).set(0)
            findings.append(ImageFinding(env.name, policy.name, name, FindingKind.NO_MATCH, at=now,
                                         message=f"none of {len(tags)} tags satisfies the policy"))
            return findings, None
        latest_digest = digests.get(sel.tag)
        behind = [t for t in current_tags if t != sel.tag and policy.is_newer(sel.key, t)]
        outdated = bool(behind) or (not current_tags and any(c.digest and c.digest != latest_digest
                                                                 for c in current))
        image_update_available.labels(environment=env.name, image=policy.name).set(1 if outdated else 0)
        cur = ", ".join(behind or current_tags) or None
        kind = FindingKind.UPDATE_AVAILABLE if outdated else FindingKind.UP_TO_DATE
        findings.append(ImageFinding(env.name, policy.name, name, kind, current=cur, latest=sel.tag,
                                     new_digest=latest_digest, at=now))
        # Write back when Git is behind, or when Git does not show the image at all (e.g. a values file).
        wants_write = outdated or not current
        return findings, ((ImageUpdate(sel.tag, latest_digest), cur) if wants_write else None)

    async def _write_back(self, env: EnvironmentSettings, updates: dict[str, ImageUpdate],
                          pending: Sequence[tuple[ImagePolicy, str, str | None]], stats: PollStats,
                          now: datetime) -> list[ImageFinding]:
        repo = self.config.repositories.get(env.repository)
        names = ", ".join(sorted(updates))
        if repo is None:
            return [ImageFinding(env.name, p.name, p.image.name, FindingKind.WRITE_BACK_FAILED, latest=t, at=now,
                                 message=f"no repository {env.repository!r}") for p, t, _ in pending]
        paths = [env.kubernetes.path] if env.kubernetes else [""]
        errors: list[str] = []

        def edit(path: str, data: bytes) -> tuple[bytes, list[str]]:
            try:
                text = data.decode("utf-8")
                new, changes = apply_setters(text, updates)
            except (UnicodeDecodeError, SetterError) as e:
                errors.append(f"{path}: {e}")
                return data, []
            return new.encode("utf-8"), [f"{path}:{c.line}: {c.policy}: {c.old} -> {c.new}" for c in changes]

        def message(lines: Sequence[str]) -> str:
            return env.write_back.message.replace("{changes}", "\n".join(lines)).replace("{environment}", env.name)

        password = None
        if repo.token_file is not None:
            try:
                password = repo.token_file.read_text().strip()
            except OSError as e:
                errors.append(f"token_file: {e.strerror}")
        auth = PushAuth(username=repo.username or ("driftd" if password else None), password=password,
                        key_filename=str(repo.ssh_key_file) if repo.ssh_key_file else None)
        push = writes_to_git(env)
        # The push is journaled in the state store's write intents when this store is one (the daemon's).
        jr = cast("journal.WriteJournal", self.store) if hasattr(self.store, "begin_write") else None
        try:
            with journal.use(jr, env=env.name, revision=None, actor=env.write_back.author):
                res = await commit_and_push(repo.url, env.branch, cache_dir=self.cache_dir, paths=paths, edit=edit,
                                            message=message, author=env.write_back.author, auth=auth, push=push,
                                            repository=repo)
        except DriftdError as e:
            log.warning("images.write_back_failed", environment=env.name, policies=names, error=str(e))
            return [ImageFinding(env.name, p.name, p.image.name, FindingKind.WRITE_BACK_FAILED, latest=t, at=now,
                                 message=str(e)) for p, t, _ in pending]
        stats.write_back = res
        out = []
        for p, t, cur in pending:
            changed = [c for c in res.changes if f": {p.name}: " in c]
            if res.revision and changed:
                out.append(ImageFinding(env.name, p.name, p.image.name, FindingKind.WRITTEN_BACK, current=cur,
                                        latest=t, revision=res.revision, at=now, message="; ".join(changed)))
            elif not res.pushed and changed:
                out.append(ImageFinding(env.name, p.name, p.image.name, FindingKind.WOULD_WRITE_BACK, current=cur,
                                        latest=t, revision=res.base, at=now, message="; ".join(changed)))
        for problem in errors:
            out.append(ImageFinding(env.name, names, "", FindingKind.WRITE_BACK_FAILED, at=now, message=problem))
        return out


def writes_to_git(env: EnvironmentSettings) -> bool:
    """Whether write-back may push for ``env``: not in ``observe`` mode (it records only), not with ``dry_run``."""
    return env.mode is not Mode.OBSERVE and not env.dry_run


def _names(ref: str, image: ImageRef) -> bool:
    try:
        return parse_image_ref(ref).name == image.name
    except ValueError:
        return False


# -- the daemon's image audit -------------------------------------------------------------

IMAGE_FINDINGS = "image-findings"  # kv namespace: the last recorded finding per (environment, policy, kind)
_RECORDED = (FindingKind.UPDATE_AVAILABLE, FindingKind.TAG_MOVED, FindingKind.DIGEST_MISSING,
             FindingKind.WRITTEN_BACK, FindingKind.WOULD_WRITE_BACK, FindingKind.WRITE_BACK_FAILED)


class ImageAudit:
    """The daemon's image policies: poll (one ``ImagePoller`` for every environment, built at first use),
    record each distinct finding once in the audit trail, hand the findings to the listeners."""

    def __init__(self, config: Config, store: StateStore, listeners: Sequence[ImageFindingListener]) -> None:
        self.config = config
        self.store = store
        self.listeners = listeners  # the daemon's list: a notifier started by a reload joins it
        self.poller: ImagePoller | None = None

    async def reconfigure(self, new: Config) -> None:
        """Registry clients and AWS sessions are rebuilt at the next poll when what they depend on changed."""
        old, self.config = self.config, new
        if self.poller is not None and (old.registries, old.aws_accounts, old.repositories, old.daemon) != \
                (new.registries, new.aws_accounts, new.repositories, new.daemon):
            poller, self.poller = self.poller, None
            await poller.aclose()

    async def aclose(self) -> None:
        if self.poller is not None:
            await self.poller.aclose()

    async def poll(self, env: EnvironmentSettings, desired: DesiredState) -> str | None:
        """One poll of ``env``'s policies; returns the revision a write-back pushed, if any."""
        if self.poller is None:
            self.poller = ImagePoller(self.config, self.store)
        stats = await self.poller.poll(env, desired)
        await self.record(env, desired.revision, stats.findings)
        for listener in self.listeners:
            try:
                await listener.image_findings(env, stats.findings)
            except Exception:
                log.exception("listener.failed", env=env.name)
        if stats.write_back is not None and stats.write_back.revision:
            log.info("images.written_back", env=env.name, revision=stats.write_back.revision)
            return stats.write_back.revision
        return None

    async def record(self, env: EnvironmentSettings, revision: str, findings: Sequence[ImageFinding]) -> None:
        """Each distinct finding once in the audit trail (kept in the kv across restarts); a state that
        cleared (the update was applied) is forgotten, so its return is recorded again."""
        store = self.store
        now = datetime.now(UTC)
        events = []
        failed = {f.policy for f in findings if f.kind is FindingKind.ERROR}
        present = set()
        for f in findings:
            if f.kind not in _RECORDED:
                continue
            key = f"{env.name}|{f.policy}|{f.kind}"
            present.add(key)
            sig = "|".join(str(x) for x in (f.current, f.latest, f.tag, f.new_digest, f.revision, f.message))
            if await store.kv_get(IMAGE_FINDINGS, key) == sig:
                continue
            await store.kv_put(IMAGE_FINDINGS, key, sig)
            versions = f" {f.current} -> {f.latest}" if f.current or f.latest else ""
            detail = f"; {f.message}" if f.message else ""
            events.append(AuditEvent(now, env.name, EventKind.IMAGE, revision=f.revision or revision,
                                     reason=f"{f.kind}: {f.policy} {f.image}{versions}{detail}"[:2000]))
        for key in await store.kv_items(IMAGE_FINDINGS):
            e, _, rest = key.partition("|")
            if e == env.name and key not in present and rest.rpartition("|")[0] not in failed:
                await store.kv_delete(IMAGE_FINDINGS, key)
        if events:
            await store.record_events(events)
