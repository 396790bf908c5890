#!/usr/bin/env bash
# System packages the sandbox servers need (tests/sandbox), installed only when missing:
# Debian's docker-registry, Alertmanager and Prometheus, plus git, openssl and kubectl; the tools
# behind SOPS and signed commits (age for test keys, gpg and ssh-keygen, which driftd runs to verify);
# and chromium (the web page's tests drive it headless through playwright's Python package, with
# executable_path: playwright's own browser download is not used).
# Shared by `.ci/run`, `make test` and `make demo`, so a newcomer's first command sets itself up.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages providing the sandbox servers (tests/sandbox), installed only if missing.
declare -A BIN_OF=(
  [docker-registry]=docker-registry
  [prometheus]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [git]=git
  [openssl]=openssl
  [age]=age-keygen
  [gnupg]=gpg
  [openssh-client]=ssh-keygen
  [make]=make
  [chromium]=chromium
  [python3-venv]=""
  # the container image (scripts/build-image.sh): podman builds and runs it on bases mmdebstrap makes;
  # runc, because crun refuses these machines' hybrid cgroup layout
  [podman]=podman
  [mmdebstrap]=mmdebstrap
  [runc]=runc
)
missing=()
for pkg in "${!BIN_OF[@]}"; do
  bin="${BIN_OF[$pkg]}"
  if [ -n "$bin" ]; then
    command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg")
  else
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  fi
done
if ! command -v kubectl >/dev/null 2>&1; then
  # `kubectl` comes from the Kubernetes/Google apt repository when configured.
  if apt-cache show kubectl >/dev/null 2>&1; then missing+=(kubectl); else
    echo ".ci/run: kubectl not found and no apt package for it; install kubectl >= 1.32" >&2; exit 1
  fi
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo ".ci/run: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

