"""Commit edited files to an environment's branch and push, with dulwich in a worker thread.

Write-back is rare, so it keeps its own bare clone per repository under ``cache_dir`` (fetched
incrementally), independent of the read path's cache. One attempt: fetch the branch head, run
the caller's ``edit`` over the files under the given paths (the edit is re-run on every attempt,
so it always applies to the current head), commit only if something changed, and push with the
fetched head as the expected old value. When the branch moved meanwhile (someone else pushed),
the server refuses the update; we fetch the new head and try again, up to ``max_attempts``.

``push=False`` (an environment in ``observe`` mode) stops after the edit: the result lists what would
be written on the current head, and nothing is committed or pushed.

``push_branch`` (``driftd adopt``) commits on top of the branch's head but pushes the commit to a NEW
branch of that name (refused if it exists), leaving the environment's branch alone: a pull request
takes it from there.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from dulwich.client import get_transport_and_path
from dulwich.errors import GitProtocolError, HangupException
from dulwich.object_store import commit_tree_changes
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo

from ..config import RepositorySettings
from ..errors import SourceError
from ..journal import journaled
from ..log import get_logger
from .git import close_transport, redact_url, transport
from .git_lock import cache_lock

log = get_logger(__name__)

# edit(path, content) -> (new content, human-readable change lines); unchanged content means no change.
EditFn = Callable[[str, bytes], tuple[bytes, Sequence[str]]]
MessageFn = Callable[[Sequence[str]], str]


@dataclass(frozen=True)
class PushAuth:
    username: str | None = None
    password: str | None = None  # never logged
    key_filename: str | None = None

    def __repr__(self) -> str:
        return f"PushAuth(username={self.username!r}, password={'***' if self.password else None})"


@dataclass(frozen=True)
class WriteBackResult:
    revision: str | None  # the pushed commit; None when no file needed a change, or nothing was pushed
    base: str  # the branch head the change was made on
    changes: tuple[str, ...]
    files: tuple[str, ...]
    attempts: int
    pushed: bool = True  # False: push=False, ``changes`` is what would have been written

class _BranchMoved(Exception):
    pass


LOCK_TIMEOUT = 300.0  # seconds to wait for another process's write-back into the same clone
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


def _cache_path(cache_dir: Path, url: str) -> Path:
    return cache_dir / hashlib.sha256(url.encode()).hexdigest()[:16]


def _walk(repo: Repo, tree_id: bytes, prefix: str) -> list[tuple[str, int, bytes]]:
    """(path, mode, blob id) of the YAML files under ``prefix`` ("" = whole tree)."""
    tree = repo[tree_id]
    assert isinstance(tree, Tree)
    if prefix:
        for part in prefix.split("/"):
            try:
                _mode, sha = tree[part.encode()]
            except KeyError:
                return []
            sub = repo[sha]
            if not isinstance(sub, Tree):
                return []
            tree = sub
    out = []
    stack: list[tuple[str, Tree]] = [(prefix, tree)]
    while stack:
        base, t = stack.pop()
        for entry in t.iteritems():
            name = entry.path.decode()
            path = f"{base}/{name}" if base else name
            if entry.mode & 0o170000 == 0o040000:
                sub = repo[entry.sha]
                assert isinstance(sub, Tree)
                stack.append((path, sub))
            elif name.endswith((".yaml", ".yml")):
                out.append((path, entry.mode, entry.sha))
    return sorted(out)


def commit_and_push_sync(url: str, branch: str, *, cache_dir: Path, paths: Sequence[str], edit: EditFn,
                         message: MessageFn, author: str, auth: PushAuth | None = None,
                         max_attempts: int = 5, push: bool = True, push_branch: str | None = None,
                         repository: RepositorySettings | None = None) -> WriteBackResult:
    """Blocking; run it in a worker thread (see :func:`commit_and_push`).

    With ``repository``, the push goes through the same client as fetches (:func:`git.transport`): the
    repository's timeout, its token, and ssh with BatchMode (never a prompt) and its known_hosts_file."""
    shown = redact_url(url)
    subject = f"{shown}#{branch}"
    ref: Any = f"refs/heads/{branch}".encode()  # dulwich types refs as a NewType of bytes
    auth = auth or PushAuth()
    if repository is not None:
        client, path = transport(repository, subject)
    else:
        client, path = get_transport_and_path(url, username=auth.username, password=auth.password,
                                              key_filename=auth.key_filename)
    try:
        return _locked(client, path, url, shown, branch, ref, subject, cache_dir, paths, edit, message, author,
                       max_attempts, push, push_branch)
    except SourceError as e:
        # dulwich's errors may quote the URL it was given, credentials included
        secrets = [auth.password or ""]
        if repository is not None and repository.token_file is not None:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                secrets.append(repository.token_file.read_text().strip())
        text = re.sub(r"://[^/@\s]+@", "://", e.message.replace(url, shown))
        for secret in filter(None, secrets):
            text = text.replace(secret, "(redacted)")
        if text != e.message:
            raise SourceError(text, subject=e.subject, retryable=e.retryable) from None
        raise
    finally:
        with contextlib.suppress(Exception):  # the ssh subprocess and http pools: not left to garbage collection
            close_transport(client)


def _locked(client: Any, path: str, url: str, shown: str, branch: str, ref: Any, subject: str, cache_dir: Path,
            paths: Sequence[str], edit: EditFn, message: MessageFn, author: str, max_attempts: int, push: bool,
            push_branch: str | None) -> WriteBackResult:
    local = _cache_path(cache_dir, url)
    # Environments sharing a repository share the clone: one writer at a time, in this process (threads)
    # and across processes (the cache's lock file).
    with _lock_for(local), cache_lock(local, timeout=LOCK_TIMEOUT, subject=subject):
        if not (local / "objects").is_dir():
            Repo.init_bare(str(local)).close()
        repo = Repo(str(local))
        try:
            return _attempts(client, path, repo, shown, branch, ref, subject, paths, edit, message, author,
                             max_attempts, push, push_branch)
        finally:
            repo.close()


def _attempts(client: Any, path: str, repo: Repo, url: str, branch: str, ref: Any, subject: str,
              paths: Sequence[str], edit: EditFn, message: MessageFn, author: str,
              max_attempts: int, push: bool, push_branch: str | None = None) -> WriteBackResult:
    target: Any = f"refs/heads/{push_branch}".encode() if push_branch else ref
    for attempt in range(1, max_attempts + 1):
        try:
            fetched = client.fetch(path, repo,
                                   determine_wants=lambda refs, depth=None: [refs[ref]] if ref in refs else [])
        except (GitProtocolError, HangupException, OSError) as e:
            raise SourceError(f"fetch for write-back failed: {e}", subject=subject) from e
        head = fetched.refs.get(ref)
        if head is None:
            raise SourceError(f"branch {branch!r} not found", subject=subject, retryable=False)
        repo.refs[ref] = head  # fetch does not update refs: keep our own view of the branch
        commit = repo[head]
        assert isinstance(commit, Commit)
        tree_changes: list[Any] = []
        lines: list[str] = []
        files: list[str] = []
        for prefix in paths:
            for fpath, mode, sha in _walk(repo, commit.tree, prefix.strip("/")):
                blob = repo[sha]
                assert isinstance(blob, Blob)
                new, described = edit(fpath, blob.data)
                if new == blob.data:
                    continue
                nb = Blob.from_string(new)
                repo.object_store.add_object(nb)
                tree_changes.append((fpath.encode(), mode, nb.id))
                lines.extend(described)
                files.append(fpath)
        if not tree_changes:
            return WriteBackResult(None, head.decode(), (), (), attempt, pushed=push)
        if not push:
            return WriteBackResult(None, head.decode(), tuple(lines), tuple(files), attempt, pushed=False)
        new_tree = commit_tree_changes(repo.object_store, commit.tree, tree_changes)
        c = Commit()
        c.tree = new_tree
        c.parents = [head]
        c.author = c.committer = author.encode()
        c.author_time = c.commit_time = int(time.time())
        c.author_timezone = c.commit_timezone = 0
        c.encoding = b"UTF-8"
        c.message = message(lines).encode()
        repo.object_store.add_object(c)
        try:
            _push(client, path, repo, target, None if push_branch else head, c.id)
        except _BranchMoved as e:
            if push_branch:
                raise SourceError(f"branch {push_branch!r} already exists on the remote ({e})", subject=subject,
                                  retryable=False) from e
            log.info("writeback.branch_moved", repository=url, branch=branch, attempt=attempt, reason=str(e))
            continue
        repo.refs[target] = c.id
        log.info("writeback.pushed", repository=url, branch=branch, revision=c.id.decode(), files=len(files),
                 attempts=attempt)
        return WriteBackResult(c.id.decode(), head.decode(), tuple(lines), tuple(files), attempt)
    raise SourceError(f"branch kept moving: push refused {max_attempts} times", subject=subject)


def _push(client: Any, path: str, repo: Repo, ref: bytes, expected: bytes | None, new: bytes) -> None:
    def update_refs(refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
        if refs.get(ref) != expected:
            # Someone pushed since our fetch: do not overwrite their commit (this would be a force push).
            was = (expected or b"no branch").decode()[:12]
            raise _BranchMoved(f"remote head is {refs.get(ref, b'?').decode()[:12]}, expected {was}")
        return {**refs, ref: new}

    try:
        result = client.send_pack(path, update_refs, generate_pack_data=repo.generate_pack_data)
    except _BranchMoved:
        raise
    except (GitProtocolError, HangupException, OSError) as e:
        # receive-pack refuses an update whose old value no longer matches ("failed to lock", "stale info").
        if "lock" in str(e) or "stale" in str(e) or "non-fast-forward" in str(e):
            raise _BranchMoved(str(e)) from e
        raise SourceError(f"push failed: {e}", subject=redact_url(path)) from e
    status = (getattr(result, "ref_status", None) or {}).get(ref)
    if status:  # an error message for this ref
        raise _BranchMoved(status if isinstance(status, str) else str(status))


async def commit_and_push(url: str, branch: str, *, cache_dir: Path, paths: Sequence[str], edit: EditFn,
                          message: MessageFn, author: str, auth: PushAuth | None = None,
                          max_attempts: int = 5, push: bool = True, push_branch: str | None = None,
                          repository: RepositorySettings | None = None) -> WriteBackResult:
    """Edit, commit and push in a worker thread; see the module docstring. A push is journaled
    (driftd.journal): intent before, outcome after (the thread is never abandoned, so it is exact)."""
    def run() -> WriteBackResult:
        return commit_and_push_sync(url, branch, cache_dir=cache_dir, paths=paths, edit=edit, message=message,
                                    author=author, auth=auth, max_attempts=max_attempts, push=push,
                                    push_branch=push_branch, repository=repository)
    if not push:
        return await anyio.to_thread.run_sync(run)
    target = push_branch or branch
    async with journaled("git", f"{_shown(url)} {target}", f"push refs/heads/{target}") as note:
        res = await anyio.to_thread.run_sync(run)
        note.reason = f"pushed {res.revision}" if res.revision else "nothing to push: no file needed a change"
    return res


def _shown(url: str) -> str:
    """The URL without userinfo: a token never reaches the audit trail."""
    return redact_url(url)
