#!/usr/bin/env bash
# Build helm and sops from their Go modules into a cache outside the checkout (like build-kube.sh).
# Prints the directory holding both binaries (the last line of stdout; progress goes to stderr).
# Honours DRIFTD_TOOLS_BIN: a directory that already holds executable `helm` and `sops` (e.g. from a
# distribution or the upstream release tarballs) is used as is, nothing is built.
# Safe to run concurrently (flock on the cache): whoever waited finds the binaries and exits.
set -euo pipefail
HELM_VERSION="${DRIFTD_HELM_VERSION:-3.19.5}"
SOPS_VERSION="${DRIFTD_SOPS_VERSION:-3.13.3}"
if [ -n "${DRIFTD_TOOLS_BIN:-}" ] && [ -x "$DRIFTD_TOOLS_BIN/helm" ] && [ -x "$DRIFTD_TOOLS_BIN/sops" ]; then
  echo "$DRIFTD_TOOLS_BIN"; exit 0
fi
CACHE="${DRIFTD_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/driftd-tools}"
OUT="$CACHE/bin-helm$HELM_VERSION-sops$SOPS_VERSION"
if [ -x "$OUT/helm" ] && [ -x "$OUT/sops" ]; then echo "$OUT"; exit 0; fi
command -v go >/dev/null || { echo "build-tools.sh: Go >= 1.24 is needed to build helm/sops (or set DRIFTD_TOOLS_BIN)" >&2; exit 1; }
mkdir -p "$OUT"
exec 9>"$CACHE/.build.lock"
if ! flock -n 9; then
  echo "build-tools.sh: another build is running; waiting for it" >&2
  flock 9
fi
if [ -x "$OUT/helm" ] && [ -x "$OUT/sops" ]; then echo "$OUT"; exit 0; fi
start=$(date +%s)
# `go install module/cmd@version` builds exactly the module's own go.mod/go.sum (no local module,
# no replace surprises); GOBIN writes straight into a temp dir we then move into place atomically.
export GOFLAGS=-mod=mod CGO_ENABLED=0
TMPBIN="$(mktemp -d "$CACHE/.tmp.XXXXXX")"
trap 'rm -rf "$TMPBIN"' EXIT
if [ ! -x "$OUT/helm" ]; then
  # internal/version.version is what `helm version` prints; the release Makefile sets it the same way.
  GOBIN="$TMPBIN" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" >&2
  mv "$TMPBIN/helm" "$OUT/helm"
fi
if [ ! -x "$OUT/sops" ]; then
  GOBIN="$TMPBIN" go install -trimpath -ldflags "-s -w" "github.com/getsops/sops/v3/cmd/sops@v$SOPS_VERSION" >&2
  mv "$TMPBIN/sops" "$OUT/sops"
fi
took=$(( $(date +%s) - start ))
echo "build-tools.sh: built helm v$HELM_VERSION + sops v$SOPS_VERSION in ${took}s into $OUT" >&2
echo "$took" > "$OUT/build-seconds"
echo "$OUT"
