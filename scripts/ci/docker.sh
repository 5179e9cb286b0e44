#!/usr/bin/env bash
# A Docker daemon and a small local test image for the remote tests' docker mode (CI and development;
# run as root). No image registry is reachable, so the image is built here: a Debian minbase rootfs
# from debootstrap (the mirror apt already uses) brought in with `docker import`, then an image
# FROM it with a venv holding the project's light dependencies (pyproject's [project] dependencies).
# Idempotent: a running daemon and existing images are reused. Prints the test image's name.
# Needs: the test user of scripts/ci/sshd.sh, added to the docker group here when it exists.
set -euo pipefail
cd "$(dirname "$0")/../.."

WORK=${COSMOS_DOCKER_WORK:-/var/tmp/cosmos-docker}
TEST_USER=${COSMOS_SSHD_USER:-cosmos-test}
BASE=cosmos-workflow-test-base:bookworm
mkdir -p "$WORK"

install_packages() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    if ((${#missing[@]})); then
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
    fi
}

start_daemon() {
    docker info >/dev/null 2>&1 && return 0
    nohup dockerd >"$WORK/dockerd.log" 2>&1 &
    for _ in $(seq 120); do
        docker info >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "docker.sh: dockerd did not start; see $WORK/dockerd.log" >&2
    tail -20 "$WORK/dockerd.log" >&2
    exit 1
}

apt_mirror() {
    local uri
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    if [[ -z "$uri" ]]; then
        uri=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

build_base() {
    docker image inspect "$BASE" >/dev/null 2>&1 && return 0
    local suite rootfs
    suite=$(awk -F= '$1 == "VERSION_CODENAME" {print $2}' /etc/os-release)
    rootfs=$(mktemp -d "$WORK/rootfs.XXXXXX")
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        "${suite:-bookworm}" "$rootfs" "$(apt_mirror)" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
    tar -C "$rootfs" -c . | docker import - "$BASE" >/dev/null
    rm -rf "$rootfs"
}

build_test_image() {
    local context tag
    context=$(mktemp -d "$WORK/context.XXXXXX")
    python3 -c 'import tomllib, sys; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
        pyproject.toml >"$context/requirements.txt"
    # a Qwen2.5-VL checkpoint plans with tokenizers' tokenizer (a real image has it with transformers);
    # a layer of its own, so the image of the project's dependencies is reused from the cache
    echo "tokenizers>=0.21" >"$context/test-requirements.txt"
    # the host's CA bundle: PyPI may be reached through a proxy whose CA only the host trusts
    cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$context/host-ca.crt"
    tag=cosmos-workflow-test:$(cat "$context/requirements.txt" "$context/test-requirements.txt" | sha256sum | cut -c1-12)
    if ! docker image inspect "$tag" >/dev/null 2>&1; then
        cat >"$context/Dockerfile" <<DOCKERFILE
FROM $BASE
COPY requirements.txt host-ca.crt /tmp/
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -q --cert /tmp/host-ca.crt -r /tmp/requirements.txt
COPY test-requirements.txt /tmp/
RUN /opt/venv/bin/pip install --no-cache-dir -q --cert /tmp/host-ca.crt -r /tmp/test-requirements.txt
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
DOCKERFILE
        docker build -q --network host -t "$tag" "$context" >"$WORK/build.log" 2>&1 ||
            { tail -20 "$WORK/build.log" >&2; exit 1; }
    fi
    docker tag "$tag" cosmos-workflow-test:latest
    rm -rf "$context"
    echo "$tag"
}

install_packages
start_daemon
if id -u "$TEST_USER" >/dev/null 2>&1; then usermod -aG docker "$TEST_USER"; fi
build_base
build_test_image
