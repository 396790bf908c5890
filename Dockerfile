# driftd container image: `docker build -t driftd .`
#
#   build args: PYTHON_IMAGE (pinned slim base), KUBECTL_VERSION (e.g. v1.32.4; empty = no kubectl),
#               VERSION, REVISION, CREATED (OCI labels)
#   run:        docker run -v driftd-state:/var/lib/driftd -v ./driftd.toml:/etc/driftd/driftd.toml:ro driftd
#
# The builder stage's steps are executed verbatim by tests/test_ship_container.py in a fresh venv
# (no Docker engine runs in CI), so keep them free of absolute paths: use $VIRTUAL_ENV and WORKDIR.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- builder: a self-contained venv from the lock; nothing else leaves this stage --------------
FROM ${PYTHON_IMAGE} AS builder
ENV VIRTUAL_ENV=/opt/driftd \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY driftd/ driftd/
RUN python -m venv "$VIRTUAL_ENV"
# -c: the lock pins every transitive dependency (aioboto3/aiobotocore/botocore/boto3 move together);
# only runtime dependencies are installed, dev tools in the lock are constraints only.
RUN "$VIRTUAL_ENV/bin/pip" install --no-cache-dir -c requirements.lock .
# Bytecode now, because the root filesystem is read-only at run time; then drop the installers.
RUN "$VIRTUAL_ENV/bin/python" -m compileall -q -j 0 "$VIRTUAL_ENV/lib" \
 && "$VIRTUAL_ENV/bin/pip" uninstall -q -y pip setuptools wheel \
 && "$VIRTUAL_ENV/bin/python" -c "import driftd.cli, kubernetes_asyncio.client, aioboto3, dulwich.repo"

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

# --- final: the interpreter, the venv, an unprivileged user; no compilers, no package caches -------
FROM ${PYTHON_IMAGE}
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
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# A fixed numeric uid/gid so Kubernetes runAsNonRoot can check it and volumes can be chowned to it.
RUN groupadd --system --gid 10001 driftd \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/driftd --no-create-home \
            --shell /usr/sbin/nologin driftd \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/driftd \
 && install -d -o root -g 10001 -m 0750 /etc/driftd \
 && rm -rf /root/.cache /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
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
