#!/usr/bin/env bash
# A Debian bookworm + Python 3 base image made on this machine, for building the Dockerfile where no
# image can be pulled.
#
#   scripts/make-base-image.sh            make the image if it does not exist yet, then print its tag
#   scripts/make-base-image.sh --rebuild  make it again (fresh Debian packages); the tag moves to the
#                                         new image, the old one stays while images built on it exist
#
# The image holds Debian's python3, python3-venv (the Dockerfile makes a virtual environment),
# ca-certificates and the minimal base system (passwd among it: the Dockerfile adds a user). It is
# what a python:3.11-slim-bookworm image offers the Dockerfile, built from Debian's packages with
# debootstrap and loaded with `docker import`. No certificate of this machine goes into it: the
# image build fetches nothing from the internet, only from the wheel index on loopback.
#
# Environment (all optional):
#   MFRM_BASE_IMAGE     tag of the image (default mfrm-ci/python-base:3.11-bookworm)
#   DEBIAN_MIRROR       where debootstrap fetches packages (default http://deb.debian.org/debian)
#   MFRM_IMAGE_WORK_DIR where the root filesystem is assembled (default /var/tmp); removed afterwards
# Needs root (debootstrap, chroot) and a Docker engine on the default socket (scripts/docker-engine.sh).
set -euo pipefail

IMAGE=${MFRM_BASE_IMAGE:-mfrm-ci/python-base:3.11-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK_PARENT=${MFRM_IMAGE_WORK_DIR:-/var/tmp}
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates

say() { printf 'make-base-image: %s\n' "$*"; }
die() { printf 'make-base-image: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: debootstrap and chroot need it"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
    || die "no Docker engine answers on this machine's default socket; start one with scripts/docker-engine.sh"

rebuild=no
case "${1:-}" in
    "") ;;
    --rebuild) rebuild=yes ;;
    *) die "unknown argument '$1': use no argument or --rebuild" ;;
esac

if [ "$rebuild" = no ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "$IMAGE exists ($(docker image inspect --format '{{.Id}}' "$IMAGE" | cut -c 1-19)); reused"
    exit 0
fi

if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap (Debian)"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap; } \
        >/dev/null || die "apt-get could not install debootstrap"
fi

ROOT=$(mktemp -d "$WORK_PARENT/mfrm-base-rootfs.XXXXXX")
cleanup() { rm -rf "$ROOT"; }
trap cleanup EXIT

say "debootstrap $SUITE ($PACKAGES) from $MIRROR into $ROOT"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 \
    || { tail -n 20 "$ROOT.log" >&2; die "debootstrap failed; log in $ROOT.log"; }
rm -f "$ROOT.log"

# What an image does not need: package lists and caches, documentation, logs of the bootstrap.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
       "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
       "$ROOT"/var/log/*.log "$ROOT"/var/log/apt/* "$ROOT"/debootstrap
# The apt sources an operator would expect inside a Debian image.
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$ROOT/etc/apt/sources.list"

say "importing the root filesystem as $IMAGE"
tar --numeric-owner -C "$ROOT" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap --variant=minbase --include=$PACKAGES $SUITE" \
    - "$IMAGE" >/dev/null
say "made $IMAGE in ${SECONDS} s"
