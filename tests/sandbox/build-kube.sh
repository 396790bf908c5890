#!/usr/bin/env bash
# Build kube-apiserver and etcd from Go modules into a cache outside the checkout.
# Prints the directory holding the binaries (the last line of stdout; progress goes to stderr).
# Honours KUBEBUILDER_ASSETS (envtest layout). Safe to run concurrently (flock on the cache).
set -euo pipefail
KUBE_VERSION="${DRIFTD_KUBE_VERSION:-1.34.4}"
ETCD_VERSION="${DRIFTD_ETCD_VERSION:-3.6.5}"
if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
  echo "$KUBEBUILDER_ASSETS"; exit 0
fi
CACHE="${DRIFTD_SANDBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/driftd-sandbox}"
OUT="$CACHE/bin-k8s$KUBE_VERSION-etcd$ETCD_VERSION"
if [ -x "$OUT/kube-apiserver" ] && [ -x "$OUT/etcd" ]; then echo "$OUT"; exit 0; fi
command -v go >/dev/null || { echo "build-kube.sh: Go >= 1.24 is needed to build kube-apiserver/etcd (or set KUBEBUILDER_ASSETS)" >&2; exit 1; }
mkdir -p "$OUT"
# One build at a time; whoever waited finds the binaries and exits.
exec 9>"$CACHE/.build.lock"
if ! flock -n 9; then
  echo "build-kube.sh: another build is running; waiting for it" >&2
  flock 9
fi
if [ -x "$OUT/kube-apiserver" ] && [ -x "$OUT/etcd" ]; then echo "$OUT"; exit 0; fi
start=$(date +%s)
KUBE_MINOR="${KUBE_VERSION#1.}"; KUBE_MINOR="${KUBE_MINOR%%.*}"
if [ ! -x "$OUT/kube-apiserver" ]; then
  SRC="$CACHE/src-k8s$KUBE_VERSION"
  mkdir -p "$SRC"
  cd "$SRC"
  # kubernetes' go.mod requires its staging modules at v0.0.0 (replaced in-tree);
  # a consumer module must map each to the published v0.X.Y (kubernetes issue 79384).
  STAGING_VERSION="v0.${KUBE_VERSION#1.}"
  go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" >/dev/null
  MODFILE="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/v$KUBE_VERSION.mod"
  {
    echo "module driftd.local/kubebuild"
    echo "go 1.24.0"
    echo "require k8s.io/kubernetes v$KUBE_VERSION"
    grep -oE '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$MODFILE" | awk -v v="$STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
  } > go.mod
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  export GOFLAGS=-mod=mod
  go mod tidy >&2 2>&1 || true
  go get "k8s.io/kubernetes/cmd/kube-apiserver@v$KUBE_VERSION" >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$KUBE_MINOR -X k8s.io/component-base/version.gitTreeState=clean" -o "$OUT/kube-apiserver.tmp.$$" k8s.io/kubernetes/cmd/kube-apiserver >&2
  mv "$OUT/kube-apiserver.tmp.$$" "$OUT/kube-apiserver"
fi
if [ ! -x "$OUT/etcd" ]; then
  # etcd: its server module's root package is etcd's main.
  ESRC="$CACHE/src-etcd$ETCD_VERSION"
  mkdir -p "$ESRC"; cd "$ESRC"
  printf 'module driftd.local/etcdbuild\ngo 1.24.0\n' > go.mod
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  export GOFLAGS=-mod=mod
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp.$$" go.etcd.io/etcd/server/v3 >&2
  mv "$OUT/etcd.tmp.$$" "$OUT/etcd"
fi
took=$(( $(date +%s) - start ))
echo "build-kube.sh: built kube-apiserver v$KUBE_VERSION + etcd v$ETCD_VERSION in ${took}s into $OUT" >&2
echo "$took" > "$OUT/build-seconds"
echo "$OUT"
