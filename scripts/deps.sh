#!/usr/bin/env bash
# Installs what berth needs to build, run and test, when it is missing (Debian, as root).
#   scripts/deps.sh          runtime + build + tests: docker.io, iproute2, util-linux, busybox-static, socat, openssh-server, openssl, docker-registry,
#                            qemu-system-x86 + linux-image-amd64 + e2fsprogs + xz-utils (vm machines), a Rust toolchain
#   scripts/deps.sh --bench  also haproxy (with socat, the classic forwarders the benchmark compares against)
set -euo pipefail

need() { command -v "$1" >/dev/null 2>&1; }

pkgs=()
need dockerd || pkgs+=(docker.io)
need containerd || pkgs+=(containerd)
need runc || pkgs+=(runc)
need ip || pkgs+=(iproute2)
need nsenter || pkgs+=(util-linux)
[ -x /bin/busybox ] || pkgs+=(busybox-static)
need curl || pkgs+=(curl)
need cc || pkgs+=(gcc libc6-dev)
need docker || pkgs+=(docker-cli)
# The tests' UDP echo server (busybox's nc has no UDP); also a forwarder the benchmark measures.
need socat || pkgs+=(socat)
# Remote machines' tests: an sshd in a namespace, certificates made at test time.
[ -x /usr/sbin/sshd ] || pkgs+=(openssh-server)
need ssh || pkgs+=(openssh-client)
need openssl || pkgs+=(openssl)
# The service test hands berth its listener as systemd does (systemd-socket-activate).
need systemd-socket-activate || pkgs+=(systemd)
# Tenants' pulls: a registry the test engine pulls from (crates/berth-test's TestRegistry).
need docker-registry || pkgs+=(docker-registry)
# Compose projects placed on one machine (remote machines' tests).
need docker-compose || pkgs+=(docker-compose)
# vm machines: QEMU, and Debian's kernel that berth builds the guest image from (its
# /boot/vmlinuz-* and /lib/modules/*), with mkfs.ext4 for the image's disks.
need qemu-system-x86_64 || pkgs+=(qemu-system-x86)
ls /boot/vmlinuz-* >/dev/null 2>&1 || pkgs+=(linux-image-amd64)
need mkfs.ext4 || pkgs+=(e2fsprogs)
# The kernel is uncompressed once when the image is built (its XZ payload), not at every boot.
need xz || pkgs+=(xz-utils)
if [ "${1:-}" = "--bench" ]; then
  need haproxy || pkgs+=(haproxy)
fi

if [ ${#pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "berth: missing packages (${pkgs[*]}); run this as root to install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # docker-cli only exists on newer Debian releases; docker.io ships the CLI on older ones.
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null \
    || apt-get install -y -qq --no-install-recommends "${pkgs[@]/docker-cli/}" >/dev/null
fi

if ! need cargo && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! need cargo; then
  # rust-toolchain.toml pins the version; rustup installs it on first use.
  if apt-cache show rustup >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustup >/dev/null
  else
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
