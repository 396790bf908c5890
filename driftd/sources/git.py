"""Git repository cache: one bare mirror per repository URL, every needed branch in one fetch.

dulwich is synchronous, so every call runs in a worker thread bounded by a
shared :class:`anyio.CapacityLimiter` (``daemon.git_concurrency``): the event
loop keeps ticking during a fetch. A fetch asks for the heads of all branches
(or of the branches environments use) in one round trip; objects already in
the cache are not transferred again. dulwich's ``fetch`` does not move refs:
this module writes ``refs/heads/*`` itself, so the cache mirrors the remote
(force-pushes overwrite, deleted branches disappear).

Timeouts: ``repository.timeout`` bounds the whole fetch. git:// sockets also get
a read timeout; http(s) uses urllib3's; ssh passes ``ConnectTimeout`` and
``ServerAliveInterval``. If a worker thread is still stuck when the async
timeout fires it is abandoned, and the next fetch of that repository reports
"previous fetch still running" until it ends, so stuck threads never pile up.

Several processes may share a cache (``driftd check`` on the daemon's host with the same
``state_dir``): a fetch holds the cache's lock file (see :mod:`driftd.sources.git_lock`) from
opening the repository to its last ref update; readers take no lock and tolerate refs that move
or vanish under them.

Garbage collection: force-pushes and deleted branches leave objects no ref reaches. When the cache
has grown to twice its size after the last collection (or after the first fetch), the fetch that
notices it - still holding the cache's lock, so no other process is writing - prunes the unreachable
objects and repacks the rest into one pack (dulwich's ``gc``). A long run's cache therefore stays
below about twice what its branches need, however often they are rewritten.

Credentials: ``token_file`` is read at each fetch (rotation works) and sent as
HTTP basic auth (username ``x-access-token`` unless configured); ``ssh_key_file``
and ``known_hosts_file`` go to the ssh command. None of them ever appears in an
error, a log line or a metric: URLs are shown without their userinfo.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shlex
import shutil
import stat
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.to_thread
from dulwich.client import (
    GitClient,
    HttpGitClient,
    HTTPProxyUnauthorized,
    HTTPUnauthorized,
    SSHGitClient,
    SubprocessSSHVendor,
    TCPGitClient,
    get_transport_and_path,
)
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.gc import garbage_collect
from dulwich.object_store import tree_lookup_path
from dulwich.objects import Blob, Commit, ObjectID, Tag, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo

from ..config import RepositorySettings
from ..errors import DesiredStateError, SourceError
from ..log import get_logger
from .git_lock import cache_lock
from .yamlsafe import DEFAULT_LIMITS, Limits

log = get_logger(__name__)

_HEADS = Ref(b"refs/heads/")
_GC_MIN_GROWTH = 1 << 20  # bytes: below this, growth is not worth a repack
_MAX_PACKS = 32  # repack beyond this many pack files: lookups scan every pack index


@dataclass(frozen=True)
class FetchResult:
    """One fetch. ``heads`` is every mirrored branch -> commit id after it."""

    repository: str
    heads: Mapping[str, str]
    changed: tuple[str, ...]  # branches new or moved (force-pushes included) since the previous fetch
    removed: tuple[str, ...]  # branches gone from the remote
    duration: float  # seconds, wall clock, including waiting for a worker thread
    bytes_received: int  # pack bytes written to the cache
    fetched_at: float  # time.time()


@dataclass(frozen=True)
class GcResult:
    """One garbage collection of a cache: its size on disk before and after, what it pruned."""

    bytes_before: int
    bytes_after: int
    pruned_objects: int
    seconds: float


@dataclass(frozen=True)
class TreeFile:
    path: str  # from the repository root
    blob: str  # hex object id: equal ids mean equal bytes
    data: bytes | None  # None when the caller said it already knows this blob


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a tree object: ``mode`` tells a directory, file, symlink or submodule apart
    (:func:`entry_kind`)."""

    name: str
    mode: int
    sha: str


def entry_kind(mode: int) -> str:
    """"dir", "symlink", "submodule" or "file", as :meth:`RepositoryCache.read_tree` tells them apart."""
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if mode & 0o170000 == 0o160000:
        return "submodule"
    return "file"


@dataclass(frozen=True)
class TreeSnapshot:
    """The files below ``path`` at ``commit``. ``tree`` is None when the path does not exist there."""

    commit: str
    path: str
    tree: str | None
    files: tuple[TreeFile, ...] = ()
    problems: tuple[DesiredStateError, ...] = ()  # symlinks, submodules, oversized files, limits


def redact_url(url: str) -> str:
    """The URL without user:password@ (tokens sometimes ride there)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def cache_dir_name(url: str) -> str:
    """A readable, collision-free directory name for a repository URL."""
    shown = re.sub(r"^[a-z+]+://", "", redact_url(url))
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", shown).strip("._")[:80] or "repo"
    return f"{safe}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


class RepositoryCache:
    """The bare cache of one repository. Methods are safe to call concurrently from one event loop."""

    def __init__(self, settings: RepositorySettings, state_dir: Path, *,
                 limiter: anyio.CapacityLimiter | None = None, branches: Iterable[str] | None = None,
                 limits: Limits = DEFAULT_LIMITS, gc_growth: float = 2.0) -> None:
        self.settings = settings
        self.name = settings.name
        self.url = settings.url
        self.shown_url = redact_url(settings.url)
        self.path = Path(state_dir) / "git" / cache_dir_name(settings.url)
        self.branches = frozenset(branches) if branches is not None else None
        self.limits = limits
        self._limiter = limiter or anyio.CapacityLimiter(4)
        self._busy = threading.Lock()  # held by the worker thread for the whole fetch
        # One open repository for the loader's reads between fetches (see _shared): dulwich keeps the pack
        # indexes and a cache of delta bases per open repository, and a fresh one per read resolved the
        # same delta chains again for every tree of every branch.
        self._shared_lock = threading.Lock()
        self._shared_repo: Repo | None = None
        self._shared_close: Callable[[], Any] = lambda: None
        self._heads: dict[str, str] | None = None  # from the last successful fetch
        self.last_fetch: FetchResult | None = None
        self.last_error: SourceError | None = None  # set when the LATEST fetch failed
        # GC when the cache exceeds gc_growth x its size after the last GC (or the first fetch)
        self.gc_growth = gc_growth
        self._gc_base: int | None = None
        self.gc_runs = 0
        self.last_gc: GcResult | None = None

    @property
    def subject(self) -> str:
        return f"repository {self.name} ({self.shown_url})"

    @property
    def heads(self) -> Mapping[str, str]:
        return dict(self._heads or {})

    # --- fetch ---------------------------------------------------------------------------------

    async def fetch(self) -> FetchResult:
        """Bring every wanted branch up to date. Raises SourceError (and remembers it in last_error)."""
        start = time.monotonic()
        try:
            with anyio.fail_after(self.settings.timeout):
                heads, received = await anyio.to_thread.run_sync(
                    self._fetch_sync, limiter=self._limiter, abandon_on_cancel=True)
        except TimeoutError:
            err = SourceError(f"fetch did not finish within {self.settings.timeout:g}s", subject=self.subject)
            self.last_error = err
            raise err from None
        except SourceError as e:
            self.last_error = e
            raise
        except Exception as e:
            # Whatever dulwich or the filesystem throws, the repository goes to error and is
            # retried; it never escapes into the daemon's loops.
            log.exception("git.fetch_crashed", repository=self.name)
            err = SourceError(f"fetch failed unexpectedly: {type(e).__name__}: {_reason(e)}", subject=self.subject)
            self.last_error = err
            raise err from e
        old = self._heads or self._local_heads_at_start
        changed = tuple(sorted(b for b, sha in heads.items() if old.get(b) != sha))
        removed = tuple(sorted(b for b in old if b not in heads))
        self._heads = heads
        self.last_error = None
        result = FetchResult(self.name, dict(heads), changed, removed, time.monotonic() - start, received, time.time())
        self.last_fetch = result
        if changed or removed:
            log.info("git.fetched", repository=self.name, changed=len(changed), removed=len(removed),
                     bytes=received, seconds=round(result.duration, 3))
        return result

    _local_heads_at_start: Mapping[str, str] = {}

    def _fetch_sync(self) -> tuple[dict[str, str], int]:
        if not self._busy.acquire(blocking=False):
            raise SourceError("the previous fetch is still running (stuck network call?)", subject=self.subject)
        try:
            # Another process's fetch into the same cache: wait for it (it brings what we want, so
            # ours then transfers little), rather than interleave object and ref writes with it.
            with cache_lock(self.path, timeout=self.settings.timeout, subject=self.subject):
                repo = self._open_or_init()  # after the lock: sees the packs the other process added
                try:
                    if self._heads is None and not self._local_heads_at_start:
                        self._local_heads_at_start = _local_heads(repo)
                    before = _pack_bytes(self.path)
                    remote_heads = self._fetch_into(repo)
                    self._write_refs(repo, remote_heads)
                    received = _pack_bytes(self.path) - before
                    size = _cache_bytes(self.path)
                    if self._gc_base is None:
                        self._gc_base = size
                    elif size > max(self.gc_growth * self._gc_base, self._gc_base + _GC_MIN_GROWTH):
                        self._gc(repo, size)
                    elif len(list((self.path / "objects" / "pack").glob("*.pack"))) > _MAX_PACKS:
                        repo.object_store.repack()
                    return remote_heads, max(received, 0)
                finally:
                    repo.close()
                    self._drop_shared()
        finally:
            self._busy.release()

    def gc_sync(self) -> GcResult:
        """Collect garbage now (tests, benchmarks, an operator's `gc`); takes the cache's lock."""
        with cache_lock(self.path, timeout=self.settings.timeout, subject=self.subject):
            repo = self._open_or_init()
            try:
                return self._gc(repo, _cache_bytes(self.path))
            finally:
                repo.close()
                self._drop_shared()

    def _gc(self, repo: Repo, size: int) -> GcResult:
        start = time.monotonic()
        # No grace period: the caller holds the cache's lock, so no other fetch has objects in flight;
        # readers only follow the refs just written.
        stats = garbage_collect(repo, prune=True, grace_period=None)
        after = _cache_bytes(self.path)
        result = GcResult(size, after, len(stats.pruned_objects), time.monotonic() - start)
        self._gc_base = after
        self.gc_runs += 1
        self.last_gc = result
        log.info("git.gc", repository=self.name, bytes_before=size, bytes_after=after,
                 pruned_objects=result.pruned_objects, seconds=round(result.seconds, 3))
        return result

    def _open_or_init(self) -> Repo:
        try:
            if (self.path / "objects").is_dir():
                return Repo(str(self.path))
            self.path.mkdir(parents=True, exist_ok=True)
            return Repo.init_bare(str(self.path), mkdir=False)
        except (OSError, NotGitRepository) as e:
            raise SourceError(f"cannot open the local cache {self.path}: {e}", subject=self.subject,
                              retryable=False) from e

    def _fetch_into(self, repo: Repo) -> dict[str, str]:
        client, path = self._client()
        wanted = self.branches
        heads: dict[str, str] = {}

        def determine_wants(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
            for ref, sha in refs.items():
                if ref.startswith(_HEADS) and sha and not ref.endswith(b"^{}"):
                    branch = ref[len(_HEADS):].decode("utf-8", "replace")
                    if wanted is None or branch in wanted:
                        heads[branch] = sha.decode("ascii")
            store = repo.object_store
            return sorted({_oid(sha) for sha in heads.values() if _oid(sha) not in store})

        try:
            client.fetch(path, repo, determine_wants=determine_wants, ref_prefix=[_HEADS])
        except (HTTPUnauthorized, HTTPProxyUnauthorized) as e:
            # Not retryable: the same credentials get the same answer until someone fixes them.
            raise SourceError(self._unauthorized(e), subject=self.subject, retryable=False) from e
        except (GitProtocolError, HangupException, NotGitRepository, OSError, ValueError, KeyError) as e:
            refused = self._ssh_refused(_reason(e)) if isinstance(client, SSHGitClient) else None
            if refused is not None:
                # Not retryable either: the same key / known_hosts get the same answer.
                raise SourceError(refused, subject=self.subject, retryable=False) from e
            raise SourceError(f"cannot fetch: {_reason(e)}", subject=self.subject) from e
        finally:
            close_transport(client)
        missing = [b for b, sha in heads.items() if _oid(sha) not in repo.object_store]
        if missing:
            raise SourceError(f"fetch incomplete: no commit for branch(es) {', '.join(sorted(missing))}",
                              subject=self.subject)
        return heads

    def _unauthorized(self, e: HTTPUnauthorized | HTTPProxyUnauthorized) -> str:
        if isinstance(e, HTTPProxyUnauthorized):
            return "the HTTP proxy refused the request (407 Proxy Authentication Required)"
        s = self.settings
        if s.token_file is None:
            return "the server requires authentication (HTTP 401); set token_file (and username if needed)"
        user = s.username or "x-access-token"
        return (f"the server rejected the credentials (HTTP 401): username {user!r} with the token from "
                f"{s.token_file}; check that the token is valid and has read access")

    def _ssh_refused(self, reason: str) -> str | None:
        """A clear message when ssh itself refused (authentication, host key), else None."""
        s = self.settings
        low = reason.lower()
        if "host key verification failed" in low or "remote host identification has changed" in low:
            where = f"in {s.known_hosts_file}" if s.known_hosts_file else "in the default known_hosts"
            changed = "has CHANGED from the one" if "has changed" in low else "is not the one or not"
            return (f"ssh refused the server: its host key {changed} recorded {where} (strict host key "
                    f"checking); verify the server's fingerprint, then add its key to that file")
        if "permission denied (" in low:
            key = f"the key {s.ssh_key_file}" if s.ssh_key_file else "the default ssh identities"
            return (f"the SSH server rejected {key} ({_ssh_denial(reason)}); check that its public key "
                    f"is authorized with read access for this user")
        return None

    def _write_refs(self, repo: Repo, heads: Mapping[str, str]) -> None:
        """Mirror ``heads`` into refs/heads. Whatever names the remote uses, this never raises: the
        fetched heads are also kept in memory, so a ref that cannot be written costs only the
        persisted copy (logged), never the daemon (a crash here would repeat on every restart,
        since the cache persists)."""
        local = _local_heads(repo)
        # Removals first: a branch renamed `rel` -> `rel/v2` (or back) is a file/directory clash
        # under refs/heads until the old ref is gone.
        for branch in local:
            if branch not in heads:
                try:
                    repo.refs.remove_if_equals(_ref(branch), None)
                except (OSError, ValueError) as e:
                    log.warning("git.ref_remove_failed", repository=self.name, branch=branch, error=_reason(e))
        # Branches new to the cache (all of them on a cold fetch) in one packed-refs write: one lock and
        # one fsync instead of one per branch (51 fsyncs were about a third of a 50-branch cold fetch).
        new = {_ref(b): _oid(sha) for b, sha in heads.items() if b not in local}
        if len(new) > 1:
            try:
                repo.refs.add_packed_refs(new)
                local = {**local, **{b: sha for b, sha in heads.items() if b not in local}}
            except (OSError, ValueError) as e:  # one by one below, with the clash handling
                log.warning("git.packed_refs_failed", repository=self.name, error=_reason(e))
        for branch, sha in heads.items():
            if local.get(branch) == sha:
                continue
            try:
                repo.refs[_ref(branch)] = _oid(sha)  # force: history may be rewritten
            except (OSError, ValueError):
                # A stale ref file where a directory must go (or the reverse), left by an older
                # driftd or another process: clear the clash, then write once more.
                _clear_ref_clash(self.path, branch)
                try:
                    repo.refs[_ref(branch)] = _oid(sha)
                except (OSError, ValueError) as e:
                    log.warning("git.ref_write_failed", repository=self.name, branch=branch, error=_reason(e))

    def _client(self) -> tuple[GitClient, str]:
        return transport(self.settings, self.subject)

    # --- revisions -------------------------------------------------------------------------------

    def resolve(self, branch: str) -> str:
        """The commit of ``branch`` at the last successful fetch. SourceError if unknown or gone."""
        if self._heads is None:
            why = "not fetched yet" if self.last_error is None else f"never fetched: {self.last_error.message}"
            raise SourceError(why, subject=self.subject)
        sha = self._heads.get(branch)
        if sha is None:
            known = ", ".join(sorted(self._heads)[:10]) or "none"
            raise SourceError(f"branch {branch!r} does not exist (branches: {known})", subject=self.subject)
        return sha

    async def commit_signature(self, commit: str) -> tuple[bytes, bytes | None]:
        """The commit as signed (without its signature header) and its signature (None: unsigned)."""
        return await anyio.to_thread.run_sync(self._signature_sync, commit, limiter=self._limiter)

    def _signature_sync(self, commit: str) -> tuple[bytes, bytes | None]:
        with self._repo() as repo:
            try:
                c = repo.object_store[_oid(commit)]
            except KeyError:
                raise SourceError(f"commit {commit} is not in the local cache", subject=self.subject) from None
            if not isinstance(c, Commit):
                raise SourceError(f"{commit} is not a commit", subject=self.subject, retryable=False)
            if c.gpgsig is None:
                return c.as_raw_string(), None
            return c.raw_without_sig(), c.gpgsig

    async def fetch_revision(self, ref: str) -> str:
        """Fetch ``ref`` (a branch, a tag, or a commit id or its unique prefix on some branch) into the
        cache without moving its mirrored branches; returns the commit id (``driftd diff --revision``)."""
        try:
            with anyio.fail_after(self.settings.timeout):
                return await anyio.to_thread.run_sync(self._fetch_revision_sync, ref, limiter=self._limiter,
                                                      abandon_on_cancel=True)
        except TimeoutError:
            raise SourceError(f"fetch did not finish within {self.settings.timeout:g}s", subject=self.subject) from None

    def _fetch_revision_sync(self, ref: str) -> str:
        if not self._busy.acquire(blocking=False):
            raise SourceError("the previous fetch is still running (stuck network call?)", subject=self.subject)
        try:
            with cache_lock(self.path, timeout=self.settings.timeout, subject=self.subject):
                repo = self._open_or_init()
                try:
                    return self._fetch_revision_into(repo, ref)
                finally:
                    repo.close()
                    self._drop_shared()
        finally:
            self._busy.release()

    def _fetch_revision_into(self, repo: Repo, ref: str) -> str:
        client, path = self._client()
        names = {Ref(b"refs/heads/" + ref.encode()), Ref(b"refs/tags/" + ref.encode()), Ref(ref.encode())}
        found: dict[str, str] = {}
        heads: list[str] = []

        def determine_wants(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
            for r, sha in refs.items():
                base = Ref(r[:-3]) if r.endswith(b"^{}") else r
                if base in names:  # a peeled entry (^{}) wins over the annotated tag object
                    if r.endswith(b"^{}") or base.decode() not in found:
                        found[base.decode()] = sha.decode("ascii")
                elif r.startswith(_HEADS) and not r.endswith(b"^{}"):
                    heads.append(sha.decode("ascii"))
            # A commit id: any branch may hold it (a pull request's); fetch the branches too.
            wanted = set(found.values()) | (set(heads) if not found else set())
            return sorted({_oid(x) for x in wanted if _oid(x) not in repo.object_store})

        try:
            client.fetch(path, repo, determine_wants=determine_wants, ref_prefix=[_HEADS, Ref(b"refs/tags/")])
        except (GitProtocolError, HangupException, NotGitRepository, OSError, ValueError, KeyError) as e:
            raise SourceError(f"cannot fetch {ref!r}: {_reason(e)}", subject=self.subject) from e
        finally:
            close = getattr(client, "close", None)
            if close is not None:
                close()
        for name in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
            if name in found:
                return _peel(repo, found[name], self.subject)
        if re.fullmatch(r"[0-9a-fA-F]{4,40}", ref):
            return _find_commit(repo, ref.lower(), heads, self.subject)
        raise SourceError(f"no branch, tag or commit named {ref!r}", subject=self.subject, retryable=False)

    # --- trees -----------------------------------------------------------------------------------

    async def tree_id(self, commit: str, path: str) -> str | None:
        """Id of the tree at ``path`` in ``commit`` (None if absent): equal ids mean identical content."""
        return await anyio.to_thread.run_sync(self._tree_id_sync, commit, path, limiter=self._limiter)

    def _tree_id_sync(self, commit: str, path: str) -> str | None:
        with self._shared() as repo:
            return _tree_at(repo, commit, path, self.subject)

    async def read_tree(self, commit: str, path: str, *, known: Callable[[str], bool] | None = None) -> TreeSnapshot:
        """Every file below ``path`` at ``commit``, without a checkout.

        Blobs for which ``known(blob_id)`` is true are listed with ``data=None``
        (the caller has them parsed already). Symlinks and submodules are refused
        as problems; so are files over the size limit and trees over the file or
        byte limits (reading stops there).
        """
        return await anyio.to_thread.run_sync(self._read_tree_sync, commit, path, known, limiter=self._limiter)

    def _read_tree_sync(self, commit: str, path: str, known: Callable[[str], bool] | None) -> TreeSnapshot:
        lim = self.limits
        with self._repo() as repo:
            store = repo.object_store
            tree = _tree_at(repo, commit, path, self.subject)
            if tree is None:
                return TreeSnapshot(commit, path, None)
            files: list[TreeFile] = []
            problems: list[DesiredStateError] = []
            total = 0
            todo = [(path, tree.encode("ascii"))]
            while todo:
                prefix, tid = todo.pop()
                t = store[ObjectID(tid)]
                assert isinstance(t, Tree)
                for entry in t.iteritems():
                    name = entry.path.decode("utf-8", "replace")
                    full = f"{prefix}/{name}" if prefix else name
                    mode = entry.mode
                    if stat.S_ISDIR(mode):
                        todo.append((full, entry.sha))
                    elif stat.S_ISLNK(mode):
                        problems.append(DesiredStateError("symbolic links are refused in desired state", file=full))
                    elif mode & 0o170000 == 0o160000:
                        problems.append(DesiredStateError("submodules are not supported in desired state", file=full))
                    else:
                        sha = entry.sha.decode("ascii")
                        if len(files) >= lim.max_files:
                            problems.append(DesiredStateError(
                                f"more than {lim.max_files:,} files below {path or '/'}", file=path or "/"))
                            return TreeSnapshot(commit, path, tree, tuple(files), tuple(problems))
                        if known is not None and known(sha):
                            files.append(TreeFile(full, sha, None))
                            continue
                        blob = store[ObjectID(entry.sha)]
                        assert isinstance(blob, Blob)
                        data = blob.as_raw_string()
                        if len(data) > lim.max_file_bytes:
                            problems.append(DesiredStateError(
                                f"file is {len(data):,} bytes, over the limit of {lim.max_file_bytes:,}", file=full))
                            continue
                        total += len(data)
                        if total > lim.max_total_bytes:
                            problems.append(DesiredStateError(
                                f"files below {path or '/'} exceed {lim.max_total_bytes:,} bytes", file=path or "/"))
                            return TreeSnapshot(commit, path, tree, tuple(files), tuple(problems))
                        files.append(TreeFile(full, sha, data))
            files.sort(key=lambda f: f.path)
            return TreeSnapshot(commit, path, tree, tuple(files), tuple(problems))

    @contextlib.contextmanager
    def reader(self) -> Iterator[TreeReader]:
        """Trees and blobs by id through one open repository, for callers in a worker thread that walk a
        tree themselves (the loader's per-directory reuse, which reads only the directories it has not seen)."""
        with self._shared() as repo:
            yield TreeReader(repo)

    async def read_blobs(self, blobs: Iterable[str]) -> dict[str, bytes]:
        """Bytes of the given blob ids (for files a caller skipped with ``known`` but now needs)."""
        ids = list(blobs)
        return await anyio.to_thread.run_sync(self.read_blobs_sync, ids, limiter=self._limiter)

    def read_blobs_sync(self, ids: list[str]) -> dict[str, bytes]:
        """read_blobs for callers already in a worker thread."""
        with self._repo() as repo:
            out = {}
            for i in ids:
                obj = repo.object_store[_oid(i)]
                assert isinstance(obj, Blob)
                out[i] = obj.as_raw_string()
            return out

    @contextlib.contextmanager
    def _shared(self) -> Iterator[Repo]:
        """The repository opened once for reads until the next fetch or GC in this process (which drop it:
        dulwich rescans the pack directory on a miss and survives packs another process removes, but a
        fresh open after our own writes costs little). One thread at a time; a concurrent reader opens its
        own, as every read did before."""
        if not self._shared_lock.acquire(blocking=False):
            with self._repo() as repo:
                yield repo
            return
        try:
            if self._shared_repo is None:
                self._shared_repo = repo = self._repo()
                # closed with the cache if no fetch drops it first (its packs stay open until then)
                self._shared_close = weakref.finalize(self, repo.close)
            yield self._shared_repo
        finally:
            self._shared_lock.release()

    def _drop_shared(self) -> None:
        with self._shared_lock:
            if self._shared_repo is not None:
                self._shared_close()
                self._shared_repo = None

    def _repo(self) -> Repo:
        try:
            return Repo(str(self.path))
        except (OSError, NotGitRepository) as e:
            raise SourceError(f"the local cache {self.path} is unreadable: {e}", subject=self.subject) from e


class TreeReader:
    """One tree's entries and one blob's bytes by id (see :meth:`RepositoryCache.reader`)."""

    def __init__(self, repo: Repo) -> None:
        self._store = repo.object_store

    def entries(self, tree: str) -> list[TreeEntry]:
        t = self._store[_oid(tree)]
        assert isinstance(t, Tree)
        return [TreeEntry(e.path.decode("utf-8", "replace"), e.mode, e.sha.decode("ascii")) for e in t.iteritems()]

    def blob(self, blob: str) -> bytes:
        kind, data = self._store.get_raw(_oid(blob))  # the bytes without building (and hashing) a Blob object
        if kind != Blob.type_num:
            raise SourceError(f"object {blob} is not a blob", retryable=False)
        return data


# --- helpers --------------------------------------------------------------------------------------


class _TimeoutTCPGitClient(TCPGitClient):
    """git:// with a socket read timeout (dulwich's client blocks forever on a silent server)."""

    read_timeout: float = 60.0

    def _connect(self, cmd: bytes, path: str | bytes, protocol_version: int | None = None) -> Any:
        proto, can_read, stderr = super()._connect(cmd, path, protocol_version)
        with contextlib.suppress(AttributeError):  # Protocol.read is the socket file's bound read
            proto.read.__self__.raw._sock.settimeout(self.read_timeout)  # type: ignore[attr-defined]
        self._opened = [*getattr(self, "_opened", []), proto]
        return proto, can_read, stderr

    def close(self) -> None:
        # dulwich leaves the connection open when a read fails midway; close it here, not at GC.
        for proto in getattr(self, "_opened", []):
            with contextlib.suppress(Exception):
                proto.close()
        self._opened = []
        super().close()


def transport(s: RepositorySettings, subject: str) -> tuple[GitClient, str]:
    """A dulwich client for the repository with its timeout, credentials and ssh options (BatchMode: never
    prompts; known_hosts_file with strict checking). Fetches and write-back pushes both use it."""
    url = s.url
    timeout = s.timeout
    try:
        if url.startswith(("http://", "https://")):
            password = _read_secret(s.token_file) if s.token_file else None
            username = (s.username or "x-access-token") if password is not None else s.username
            parts = urlsplit(url)
            base = urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
            return _ClosingHttpGitClient(base, username=username, password=password, timeout=timeout), parts.path
        if url.startswith("git://"):
            parts = urlsplit(url)
            tcp = _TimeoutTCPGitClient(parts.hostname or "localhost", port=parts.port)
            tcp.read_timeout = timeout
            return tcp, parts.path
        if url.startswith("ssh://") or re.match(r"^[\w.-]+@[\w.-]+:", url):
            ssh = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(timeout))}",
                   "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=2"]
            if s.known_hosts_file:
                ssh += ["-o", f"UserKnownHostsFile={s.known_hosts_file}", "-o", "StrictHostKeyChecking=yes"]
            if s.ssh_key_file:
                ssh += ["-o", "IdentitiesOnly=yes"]
            client, path = get_transport_and_path(
                url, key_filename=str(s.ssh_key_file) if s.ssh_key_file else None, ssh_command=shlex.join(ssh))
            if isinstance(client, SSHGitClient):
                client.ssh_vendor = _ClosingSSHVendor.install(client)
            return client, path
        local = url.removeprefix("file://")
        return get_transport_and_path(local)
    except (ValueError, OSError) as e:
        raise SourceError(f"cannot use this URL: {_reason(e)}", subject=subject, retryable=False) from e


def close_transport(client: Any) -> None:
    """Close what :func:`transport` opened: ssh processes and pipes, http pools."""
    vendor = getattr(client, "ssh_vendor", None)
    if isinstance(vendor, _ClosingSSHVendor):
        vendor.close_all()
    close = getattr(client, "close", None)
    if close is not None:
        close()


class _ClosingHttpGitClient(HttpGitClient):
    """http(s) whose close() really closes: dulwich raises on 401/404 without releasing the
    response (its socket stays open until garbage collection) and never clears its pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._responses: list[Any] = []
        request = self.pool_manager.request

        def tracked(*a: Any, **kw: Any) -> Any:
            resp = request(*a, **kw)
            self._responses.append(resp)
            return resp

        self.pool_manager.request = tracked  # type: ignore[method-assign]

    def close(self) -> None:
        for resp in self._responses:
            with contextlib.suppress(Exception):
                resp.close()
        self._responses = []
        with contextlib.suppress(Exception):
            self.pool_manager.clear()
        super().close()


class _ClosingSSHVendor(SubprocessSSHVendor):
    """The system ssh client, whose processes and pipes are closed after the fetch: dulwich leaves
    them open when ssh fails (refused key or host key), until garbage collection."""

    def __init__(self) -> None:
        self._opened: list[Any] = []  # dulwich Protocols first, then the ssh connections under them

    @classmethod
    def install(cls, client: SSHGitClient) -> _ClosingSSHVendor:
        vendor = cls()
        connect = client._connect

        def tracked(*args: Any, **kwargs: Any) -> Any:
            proto, can_read, stderr = connect(*args, **kwargs)
            vendor._opened.insert(0, proto)
            return proto, can_read, stderr

        client._connect = tracked  # type: ignore[method-assign]
        return vendor

    def run_command(self, *args: Any, **kwargs: Any) -> Any:
        con = super().run_command(*args, **kwargs)
        self._opened.append(con)
        return con

    def close_all(self) -> None:
        for con in self._opened:
            with contextlib.suppress(Exception):
                con.close()
        self._opened = []


def _ssh_denial(reason: str) -> str:
    """'Permission denied (publickey)' out of ssh's 'user@host: Permission denied (publickey).'"""
    m = re.search(r"permission denied \([^)]*\)", reason, re.IGNORECASE)
    return m.group(0) if m else "permission denied"


def _tree_at(repo: Repo, commit: str, path: str, subject: str) -> str | None:
    store = repo.object_store
    try:
        c = store[_oid(commit)]
    except KeyError:
        raise SourceError(f"commit {commit} is not in the local cache", subject=subject) from None
    if not isinstance(c, Commit):
        raise SourceError(f"{commit} is not a commit", subject=subject, retryable=False)
    if not path:
        return str(c.tree.decode("ascii"))
    try:
        mode, sha = tree_lookup_path(store.__getitem__, c.tree, path.encode())
    except (KeyError, NotADirectoryError):
        return None
    if not stat.S_ISDIR(mode):
        return None
    return str(sha.decode("ascii"))


def _peel(repo: Repo, sha: str, subject: str) -> str:
    """The commit an (annotated) tag points at."""
    obj = repo.object_store[_oid(sha)]
    for _ in range(10):
        if isinstance(obj, Commit):
            return str(obj.id.decode("ascii"))
        if isinstance(obj, Tag):
            obj = repo.object_store[obj.object[1]]
            continue
        break
    raise SourceError(f"{sha} is not a commit", subject=subject, retryable=False)


def _find_commit(repo: Repo, prefix: str, heads: list[str], subject: str, limit: int = 20_000) -> str:
    """The commit whose id starts with ``prefix`` among the history of ``heads`` (bounded walk)."""
    if len(prefix) == 40 and _oid(prefix) in repo.object_store:
        return _peel(repo, prefix, subject)
    matches: set[str] = set()
    walker = repo.get_walker(include=[_oid(h) for h in heads if _oid(h) in repo.object_store])
    for seen, entry in enumerate(walker, start=1):
        sha = entry.commit.id.decode("ascii")
        if sha.startswith(prefix):
            matches.add(sha)
        if seen >= limit or len(matches) > 1:
            break
    if len(matches) == 1:
        return matches.pop()
    if matches:
        raise SourceError(f"commit prefix {prefix!r} is ambiguous", subject=subject, retryable=False)
    raise SourceError(f"no commit {prefix!r} on any branch", subject=subject, retryable=False)


def _local_heads(repo: Repo) -> dict[str, str]:
    """Branch -> commit in the cache. A ref deleted or being replaced by another process between the
    listing and the read is skipped: the caller's fetch rewrites every ref it needs anyway."""
    out = {}
    for ref in repo.refs.keys(base=_HEADS):
        try:
            sha = repo.refs[Ref(_HEADS + ref)]
        except (KeyError, OSError, ValueError):
            continue
        out[ref.decode("utf-8", "replace")] = sha.decode("ascii")
    return out


def _clear_ref_clash(repo_path: Path, branch: str) -> None:
    """Remove what stands in the way of refs/heads/<branch>: a loose ref file at one of its parent
    directories (`rel` blocks `rel/v2`), or a directory at its own path (`rel/` blocks `rel`).
    Only loose refs under refs/heads are touched; the objects stay, so nothing is refetched."""
    heads = (repo_path / "refs" / "heads").resolve()
    parts = [p for p in branch.split("/") if p]
    target = heads.joinpath(*parts).resolve() if parts else heads
    if not target.is_relative_to(heads) or target == heads:
        return
    for i in range(1, len(parts)):
        p = heads.joinpath(*parts[:i])
        if p.is_file() or p.is_symlink():
            p.unlink(missing_ok=True)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target, ignore_errors=True)


def _oid(hexsha: str) -> ObjectID:
    return ObjectID(hexsha.encode("ascii"))


def _ref(branch: str) -> Ref:
    return Ref(_HEADS + branch.encode())


def _pack_bytes(path: Path) -> int:
    d = path / "objects" / "pack"
    try:
        return sum(p.stat().st_size for p in d.glob("*.pack"))
    except OSError:
        return 0


def _cache_bytes(path: Path) -> int:
    """Bytes of the cache's object store: packs, their indexes, loose objects."""
    total = 0
    try:
        for p in (path / "objects").rglob("*"):
            if p.is_file():
                total += p.stat().st_size
    except OSError:
        pass
    return total


def _read_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as e:
        raise SourceError(f"cannot read the token file {path}: {e.strerror or e}", retryable=False) from e


def _reason(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    if isinstance(e, ConnectionRefusedError):
        text = "connection refused"
    elif isinstance(e, TimeoutError):
        text = "timed out"
    elif isinstance(e, NotGitRepository) and text == type(e).__name__:
        text = "no Git repository at this URL (HTTP 404)"  # dulwich's http client raises it bare
    # Never echo credentials that a library put into a message.
    return re.sub(r"://[^/@\s]+@", "://", text)
