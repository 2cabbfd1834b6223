#!/usr/bin/env bash
# Build the mailctl test base images (no registry needed):
#   mailctl-base-rootfs:bookworm-<arch>   debootstrap'ed rootfs, `docker import`ed
#   mailctl-base:bookworm-<arch>          + Dockerfile (init, apt config, masks)
#   mailctl-base:bookworm-<arch>-mail     + mail .debs in apt's cache (optional:
#                                           MAILCTL_MAIL_IMAGE=1 or --mail)
# Usage: build.sh [amd64|ppc64el] [--mail]      (default amd64)
# Idempotent: every image that already exists is reused, not rebuilt.
# Set MAILCTL_REBUILD=1 to force a rebuild of the images of that arch.
set -euo pipefail

ARCH=amd64
MAIL=${MAILCTL_MAIL_IMAGE:-0}
for a in "$@"; do
    case "$a" in
        amd64|ppc64el) ARCH=$a ;;
        ppc64le) ARCH=ppc64el ;;
        --mail) MAIL=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "usage: $0 [amd64|ppc64el] [--mail]" >&2; exit 2 ;;
    esac
done

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUITE=bookworm
MIRROR=${MAILCTL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTFS_IMG=mailctl-base-rootfs:$SUITE-$ARCH
BASE_IMG=mailctl-base:$SUITE-$ARCH
MAIL_IMG=mailctl-base:$SUITE-$ARCH-mail

# Packages Ansible and the tests need; installed by debootstrap directly
# (the Dockerfile only installs whatever is still missing).
PKGS=python3,python3-apt,sudo,ca-certificates,procps,iproute2,openssh-server,openssl,init-system-helpers
if [ "$ARCH" = amd64 ]; then
    PKGS=$PKGS,systemd,systemd-sysv,dbus
else
    # systemd cannot run as PID 1 under qemu-user: SysV `service` scripts only.
    PKGS=$PKGS,sysvinit-utils
fi

T0=$(date +%s)
step_t=$T0
log() { echo "[build.sh $(date +%T)] $*"; }
timing() { local now; now=$(date +%s); log "$1 took $((now - step_t)) s"; step_t=$now; }
have_image() { [ "${MAILCTL_REBUILD:-0}" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

# Docker must be up.
if ! docker info >/dev/null 2>&1; then
    echo "docker daemon not reachable (start it, e.g. 'dockerd >/var/log/dockerd.log 2>&1 &')" >&2
    exit 1
fi

ensure_binfmt() {
    [ "$ARCH" = amd64 ] && return 0
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-ppc64le ]; then
        update-binfmts --enable qemu-ppc64le
    fi
    if ! grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-ppc64le; then
        echo "qemu-ppc64le binfmt lacks flag F (fix-binary): containers cannot run ppc64el binaries" >&2
        exit 1
    fi
    log "binfmt qemu-ppc64le: $(grep -E '^(enabled|interpreter|flags)' /proc/sys/fs/binfmt_misc/qemu-ppc64le | tr '\n' ' ')"
}

build_rootfs() {
    if have_image "$ROOTFS_IMG"; then log "$ROOTFS_IMG exists, reusing"; return 0; fi
    command -v debootstrap >/dev/null || { echo "debootstrap not installed (apt-get install debootstrap)" >&2; exit 1; }
    ensure_binfmt
    local dir
    dir=$(mktemp -d "/var/tmp/mailctl-rootfs-$ARCH.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$dir'" EXIT
    log "debootstrap $SUITE $ARCH into $dir (include: $PKGS)"
    debootstrap --variant=minbase --arch="$ARCH" --include="$PKGS" "$SUITE" "$dir" "$MIRROR"
    timing "debootstrap ($ARCH)"
    # Trim the tree before import.
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* \
        "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
        "$dir"/var/log/bootstrap.log "$dir"/debootstrap
    tar --numeric-owner -C "$dir" -c . | docker import - "$ROOTFS_IMG" >/dev/null
    timing "docker import ($ROOTFS_IMG)"
    rm -rf "$dir"
    trap - EXIT
}

build_base() {
    if have_image "$BASE_IMG"; then log "$BASE_IMG exists, reusing"; return 0; fi
    ensure_binfmt
    DOCKER_BUILDKIT=0 docker build --network host \
        --build-arg ROOTFS="$ROOTFS_IMG" --build-arg DEB_ARCH="$ARCH" \
        -t "$BASE_IMG" -f "$HERE/Dockerfile" "$HERE"
    timing "docker build ($BASE_IMG)"
}

build_mail() {
    if have_image "$MAIL_IMG"; then log "$MAIL_IMG exists, reusing"; return 0; fi
    ensure_binfmt
    DOCKER_BUILDKIT=0 docker build --network host \
        --build-arg BASE="$BASE_IMG" \
        -t "$MAIL_IMG" -f "$HERE/Dockerfile.mail" "$HERE"
    timing "docker build ($MAIL_IMG)"
}

build_rootfs
build_base
if [ "$MAIL" = 1 ]; then build_mail; fi
log "done: $BASE_IMG$([ "$MAIL" = 1 ] && echo " $MAIL_IMG") in $(( $(date +%s) - T0 )) s"
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep "^mailctl-base.*$ARCH" || true
