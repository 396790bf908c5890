#!/usr/bin/env bash
# Build the driftd container image from the Dockerfile with podman, on local Debian bases made by
# mmdebstrap (no registry pull), everything cached outside the checkout in ~/.cache/driftd-image:
#
#   base-build-<key>.tar    bookworm minbase + python3.11 venv/ensurepip: the builder stage's base (has a shell)
#   base-runtime-<key>.tar  python3.11 and its shared libraries only, extracted without a shell, dpkg
#                           scripts or docs: the final stage's base (RUNTIME_IMAGE)
#   storage/                the podman image store (layers are reused: a second build takes seconds)
#   containers.conf, storage.conf   what podman needs on this machine (see below); export
#                           CONTAINERS_CONF / CONTAINERS_STORAGE_CONF to these to use the store by hand.
#
# Prints the image reference on the last line of stdout (progress goes to stderr).
# Safe to run concurrently (flock on the cache). `DRIFTD_IMAGE_CACHE` moves the cache.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${DRIFTD_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/driftd-image}"
SUITE=bookworm
IMAGE="${DRIFTD_IMAGE:-localhost/driftd:test}"
# Bump when the package lists or the hooks below change: the key names the cached tarballs.
BUILD_PKGS="python3.11,python3.11-venv,python-is-python3,ca-certificates"
RUNTIME_PKGS="python3.11-minimal,libpython3.11-stdlib,media-types,netbase,tzdata"
BKEY="$(printf '%s|%s|v1' "$SUITE" "$BUILD_PKGS" | sha256sum | cut -c1-12)"
RKEY="$(printf '%s|%s|v3' "$SUITE" "$RUNTIME_PKGS" | sha256sum | cut -c1-12)"
BUILD_BASE="localhost/driftd-base/python-build:$SUITE-$BKEY"
RUNTIME_BASE="localhost/driftd-base/python-runtime:$SUITE-$RKEY"

mkdir -p "$CACHE/storage" "$CACHE/run"
# podman's defaults fail on these machines, with these exact errors:
#  - crun: "cgroups in hybrid mode not supported, drop all controllers from cgroupv2" (cgroup v1 with a
#    cgroup2 mount holding hugetlb) -> runc, which handles the hybrid layout;
#  - "setrlimit RLIMIT_NOFILE: Operation not permitted" (root without CAP_SYS_RESOURCE: podman raises
#    nofile/nproc for root containers) -> limits no higher than this shell's own.
nofile_hard="$(ulimit -Hn)"; nofile="$(ulimit -n)"
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nofile_hard" != unlimited ] && [ "$nofile" -gt "$nofile_hard" ] && nofile="$nofile_hard"
nproc=4096
nproc_hard="$(ulimit -Hu)"
[ "$nproc_hard" != unlimited ] && [ "$nproc_hard" -lt "$nproc" ] && nproc="$nproc_hard"
runtime=runc
command -v runc >/dev/null || runtime=crun
cat > "$CACHE/containers.conf.tmp" <<EOF
# written by scripts/build-image.sh
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "$runtime"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
mv "$CACHE/containers.conf.tmp" "$CACHE/containers.conf"
cat > "$CACHE/storage.conf.tmp" <<EOF
# written by scripts/build-image.sh
[storage]
driver = "overlay"
graphroot = "$CACHE/storage"
runroot = "$CACHE/run"
EOF
mv "$CACHE/storage.conf.tmp" "$CACHE/storage.conf"
export CONTAINERS_CONF="$CACHE/containers.conf" CONTAINERS_STORAGE_CONF="$CACHE/storage.conf"

for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "build-image.sh: $tool is missing (scripts/system-deps.sh installs it)" >&2; exit 1; }
done

exec 9>"$CACHE/.build.lock"
if ! flock -n 9; then
  echo "build-image.sh: another image build is running; waiting for it" >&2
  flock 9
fi
start=$(date +%s)

# A base image from a root filesystem, built once per key and imported into the store once.
# mmdebstrap writes a directory (its --customize-hook did not run with --variant=extract here), the
# function `customize_<name>` edits it, and tar packs it for `podman import`.
base() {  # name ref tarball variant packages
  local name="$1" ref="$2" tar="$3" variant="$4" pkgs="$5"
  if ! podman image exists "$ref"; then
    if [ ! -s "$tar" ]; then
      echo "build-image.sh: mmdebstrap $variant $SUITE ($pkgs) -> $tar" >&2
      local dir="$tar.d"
      rm -rf "$dir"
      mmdebstrap --quiet --format=directory --mode=root --variant="$variant" --include="$pkgs" \
        --skip=cleanup/apt/cache "$SUITE" "$dir" >&2
      "customize_$name" "$dir"
      tar --numeric-owner --xattrs -C "$dir" -cf "$tar.tmp" .
      rm -rf "$dir"
      mv "$tar.tmp" "$tar"
    fi
    podman import --quiet "$tar" "$ref" >/dev/null
  fi
}

# minbase: apt, dpkg, a shell and passwd (the builder's RUN steps need them); ensurepip's wheels come
# with python3.11-venv, so pip exists only inside the venv it builds and is uninstalled there.
customize_build() {
  rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/usr/share/doc "$1"/usr/share/man
}
# extract: the packages' files only, no maintainer scripts and none of the Essential set, so no shell,
# no coreutils, no apt. The venv's interpreter link is /usr/bin/python (python-is-python3 in the
# builder), so the same path must exist here. The package list stays inside as the image's manifest.
customize_runtime() {
  mkdir -p "$1"/usr/share/driftd-base "$1"/tmp
  chmod 1777 "$1"/tmp
  ls "$1"/var/cache/apt/archives | sed -n 's/_.*//p' | sort -u > "$1"/usr/share/driftd-base/packages
  ln -sf python3.11 "$1"/usr/bin/python3
  ln -sf python3 "$1"/usr/bin/python
  rm -rf "$1"/var/cache/apt "$1"/var/lib/apt "$1"/usr/share/doc "$1"/usr/share/man "$1"/usr/share/locale \
         "$1"/usr/share/info "$1"/usr/share/lintian
}
base build "$BUILD_BASE" "$CACHE/base-build-$BKEY.tar" minbase "$BUILD_PKGS"
base runtime "$RUNTIME_BASE" "$CACHE/base-runtime-$RKEY.tar" extract "$RUNTIME_PKGS"

# Behind a TLS-intercepting proxy pip must trust its CA: hand pip the host's bundle (pip only; the image
# keeps Debian's own bundle).
ca_args=()
host_ca="${PIP_CERT:-${SSL_CERT_FILE:-}}"
if [ -n "$host_ca" ] && [ -f "$host_ca" ]; then
  ca_args=(--volume "$host_ca:/etc/pip-build-ca.crt:ro" --build-arg PIP_CERT=/etc/pip-build-ca.crt)
fi
echo "build-image.sh: podman build $IMAGE" >&2
# --layers reuses the dependency layer while pyproject.toml and the lock are unchanged;
# --format docker keeps the HEALTHCHECK (OCI image configs have no field for it).
podman build --quiet --layers --format docker --pull=never "${ca_args[@]}" \
  --build-arg "PYTHON_IMAGE=$BUILD_BASE" --build-arg "RUNTIME_IMAGE=$RUNTIME_BASE" \
  --build-arg "REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
  -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT" >&2
# Layers of earlier builds pile up (~150 MB per source change). Pruning also drops the layer cache
# (the next build reinstalls the dependencies, ~2 min), so only when the store passes 4 GiB.
if [ "$(du -sb "$CACHE/storage" 2>/dev/null | cut -f1)" -gt $((4 << 30)) ]; then
  echo "build-image.sh: the image store passed 4 GiB: pruning unnamed images" >&2
  podman image prune --force >/dev/null 2>&1 || true
fi
echo "build-image.sh: $IMAGE ready in $(( $(date +%s) - start ))s" >&2
echo "$IMAGE"
