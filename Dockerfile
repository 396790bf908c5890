# driftd container image: `docker build -t driftd .`
#
#   build args: PYTHON_IMAGE (pinned slim base), RUNTIME_IMAGE (the final stage's base; default PYTHON_IMAGE),
#               KUBECTL_VERSION (e.g. v1.32.4; empty = no kubectl), VERSION, REVISION, CREATED (OCI labels)
#   run:        docker run -v driftd-state:/var/lib/driftd -v ./driftd.toml:/etc/driftd/driftd.toml:ro driftd
#
# `make image` (scripts/build-image.sh) builds it with podman on local Debian bases made by mmdebstrap:
# RUNTIME_IMAGE there is python3.11 without a shell, so the final stage has no RUN: users, directories
# and the CA bundle are prepared in the builder and copied. RUNTIME_IMAGE must hold the builder's
# interpreter at the same path (the venv links to it).
# The builder stage's steps are executed verbatim by tests/test_ship_container.py in a fresh venv,
# so keep them free of absolute paths: use $VIRTUAL_ENV and WORKDIR.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG RUNTIME_IMAGE=${PYTHON_IMAGE}

# --- builder: a self-contained venv from the lock; nothing else leaves this stage --------------
FROM ${PYTHON_IMAGE} AS builder
# CA bundle pip trusts: a build behind a TLS-intercepting proxy mounts its own (scripts/build-image.sh
# does with podman build -v); it is used by pip only and never copied into the image.
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
ENV VIRTUAL_ENV=/opt/driftd \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
RUN python -m venv "$VIRTUAL_ENV"
# Dependencies first, in their own layer: it is reused while pyproject.toml and the lock are unchanged.
# -c: the lock pins every transitive dependency (aioboto3/aiobotocore/botocore/boto3 move together);
# only runtime dependencies are installed, dev tools in the lock are constraints only.
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
      > runtime-requirements.txt \
 && "$VIRTUAL_ENV/bin/pip" install --no-cache-dir -c requirements.lock -r runtime-requirements.txt
COPY driftd/ driftd/
RUN "$VIRTUAL_ENV/bin/pip" install --no-cache-dir --no-deps -c requirements.lock .
# Bytecode now, because the root filesystem is read-only at run time; then drop the installers.
RUN "$VIRTUAL_ENV/bin/python" -m compileall -q -j 0 "$VIRTUAL_ENV/lib" \
 && "$VIRTUAL_ENV/bin/pip" uninstall -q -y pip setuptools wheel \
 && "$VIRTUAL_ENV/bin/python" -c "import driftd.cli, kubernetes_asyncio.client, aioboto3, dulwich.repo"
# What the final stage needs besides the venv, made here because the final stage may have no shell:
# a fixed numeric uid/gid (runAsNonRoot checks a number; volumes can be chowned to it), its home = the
# state directory, the config directory, and the CA bundle (python's ssl reads it for HTTPS).
RUN mkdir -p rootfs/etc/ssl/certs rootfs/etc/driftd state \
 && cat /etc/passwd > rootfs/etc/passwd && cat /etc/group > rootfs/etc/group \
 && echo "driftd:x:10001:10001:driftd:/var/lib/driftd:/usr/sbin/nologin" >> rootfs/etc/passwd \
 && echo "driftd:x:10001:" >> rootfs/etc/group \
 && cat /etc/ssl/certs/ca-certificates.crt > rootfs/etc/ssl/certs/ca-certificates.crt \
 && chmod 0755 rootfs/etc/driftd && chmod 0700 state

# --- kubectl (optional): renders kustomizations; fetched and checksum-verified only when asked ------
FROM ${PYTHON_IMAGE} AS kubectl
ARG KUBECTL_VERSION=""
ARG TARGETARCH=amd64
RUN mkdir -p /out && if [ -n "$KUBECTL_VERSION" ]; then python -c '\
import hashlib, os, sys, urllib.request as u; \
url = "https://dl.k8s.io/release/%s/bin/linux/%s/kubectl" % (os.environ["KUBECTL_VERSION"], os.environ["TARGETARCH"]); \
data = u.urlopen(url, timeout=300).read(); \
want = u.urlopen(url + ".sha256", timeout=60).read().decode().split()[0]; \
got = hashlib.sha256(data).hexdigest(); \
sys.exit("kubectl checksum mismatch") if got != want else None; \
open("/out/kubectl", "wb").write(data); os.chmod("/out/kubectl", 0o755)'; fi

# --- final: the interpreter, the venv, an unprivileged user; no RUN, so no compilers, caches or shell needed
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="driftd" \
      org.opencontainers.image.description="GitOps drift detector for Kubernetes and AWS: observe, alert or enforce." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="driftd" \
      org.opencontainers.image.documentation="README.md, docs/operations.md" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"
COPY --from=builder /src/rootfs/ /
COPY --from=builder --chown=10001:10001 /src/state/ /var/lib/driftd/
COPY --from=builder /opt/driftd /opt/driftd
COPY --from=kubectl /out/ /usr/local/bin/
ENV VIRTUAL_ENV=/opt/driftd \
    PATH=/opt/driftd/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DRIFTD_CONFIG=/etc/driftd/driftd.toml \
    HOME=/var/lib/driftd \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /var/lib/driftd
VOLUME ["/var/lib/driftd"]
# The image's config must listen beyond loopback for kubelet probes: [daemon] listen = "0.0.0.0:9717".
EXPOSE 9717
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:9717/healthz', timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["driftd", "run"]
CMD ["--config", "/etc/driftd/driftd.toml"]
