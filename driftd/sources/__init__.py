"""Desired state from Git (and, in ``registry*``, image versions from registries).

Public API for the daemon and the one-shot commands
===================================================

Repositories (``driftd.sources.git``; dulwich lives only there)::

    limiter = anyio.CapacityLimiter(config.daemon.git_concurrency)   # one, shared by all repositories
    cache = RepositoryCache(repo_settings, config.daemon.state_dir, limiter=limiter,
                            branches={e.branch for e in envs_of_this_repo})   # None: every branch
    result: FetchResult = await cache.fetch()   # one round trip for every branch; raises SourceError
    #   result.heads {branch: sha}, .changed, .removed, .duration, .bytes_received, .fetched_at
    cache.resolve(branch) -> sha                # as of the last successful fetch; SourceError if gone
    cache.last_error                            # SourceError of the latest fetch, or None once it succeeds
    await cache.tree_id(sha, path) -> str | None
    await cache.read_tree(sha, path, known=...) -> TreeSnapshot

Poll each repository every ``repository.poll_interval`` with ``fetch()``; a
no-op fetch costs one small round trip and no parsing. The cache lives in
``<state_dir>/git/<host_path-hash>`` and survives restarts (fetches stay
incremental). Errors never carry credentials.

Desired state (``driftd.sources.loader``)::

    loader = DesiredStateLoader(caches_by_repository_name,
                                supported_aws_types=frozenset(aws_registry.supported_types()))
    r: LoadResult = await loader.load(env, account_id="123456789012", region="eu-west-1")
    if r.ok:      r.state: model.DesiredState (revision = commit sha, kubernetes, aws, warnings)
    else:         r.error (one line), r.problems (each DesiredStateError: file[:line[:column]]: message),
                  r.last_good_revision (the environment stays in error; nothing is "removed from Git")

``load`` never fetches: it reads the repository cache as of its last fetch.
Call it after every fetch (and on the environment's interval); it returns the
*same* DesiredState object when neither the commit nor the settings changed,
and reuses parsed objects when the commit changed but the environment's trees
did not (``r.parsed`` says whether anything was parsed). A fetch failure, a
deleted branch, a missing path or any unparsable file puts the environment in
error; other environments of the same repository load independently.

Semantics the targets rely on:

- Kubernetes objects (``model.DesiredObject``): ``key.namespace`` is the
  object's namespace, defaulted to ``environments.kubernetes.namespace`` except
  for the built-in cluster-scoped kinds in ``manifests.CLUSTER_SCOPED_KINDS``.
  A CRD-defined cluster-scoped kind gets the default namespace here: the
  kubernetes target must clear it after discovery. ``body`` is the manifest
  (with the defaulted namespace written into metadata); ``source`` is
  ``path#document``. Treat bodies as read-only: they are shared by cache hits.
- AWS declarations (``model.AwsDeclaration``): ``key.kind`` is the
  CloudFormation type, ``key.namespace`` the region, ``key.name`` the physical
  name (``Metadata["driftd.io/physical-id"]``, else the type's name property
  from ``declarations.NAME_PROPERTY``, else the logical id). ``not_checked``
  holds JSON pointers below Properties that need a deployed stack: they are
  absent from ``properties`` and must be removed from the live side before
  comparing. If the name property itself is in ``not_checked``, the identity is
  unknown: report "not checked", never "missing". Types outside
  ``supported_aws_types`` are kept and listed in ``DesiredState.warnings``.

Pure parsers, reusable anywhere: ``yamlsafe.load_documents`` (bounded YAML:
alias bombs, duplicate keys, size and document limits, exact locations),
``manifests.manifests_from_files``, ``declarations.parse_template``.
"""
