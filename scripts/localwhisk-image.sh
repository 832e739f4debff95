#!/usr/bin/env bash
# The image localwhisk's Docker mode runs action containers from (`localwhisk --containers docker`).
#
#   scripts/localwhisk-image.sh       make the image if the engine lacks it (idempotent), then print it
#
# Nothing can be pulled on these machines, so the image is made here: a Debian bookworm root file
# system with python3 (3.11) from Debian's own packages (debootstrap, minbase variant), with apt's
# caches, documentation and manual pages left out, imported into the engine with `docker import`.
# The image holds the interpreter and its standard library only: localwhisk mounts its own worker
# (the process that loads and runs an action, standard library only) read-only into each container
# and sends the action's code through it, so the image never needs rebuilding for a new localwhisk.
# Actions that import third-party modules need them in the image: LOCALWHISK_IMAGE_PACKAGES names
# extra Debian packages (e.g. "python3-jinja2 python3-markdown"); give such an image its own name.
#
# When the engine already holds an image of that name made from the same recipe (a label records
# it), the script only checks and prints (well under a second).
#
# Environment: LOCALWHISK_IMAGE (default localwhisk/action-python:3.11), LOCALWHISK_IMAGE_PACKAGES
# (default none), DEBIAN_MIRROR (default http://deb.debian.org/debian), DOCKER_SOCKET (default
# /var/run/docker.sock; scripts/docker-engine.sh starts the test engine there).
set -euo pipefail

IMAGE=${LOCALWHISK_IMAGE:-localwhisk/action-python:3.11}
EXTRA_PACKAGES=${LOCALWHISK_IMAGE_PACKAGES:-}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SOCKET=${DOCKER_SOCKET:-/var/run/docker.sock}
SUITE=bookworm
# The recipe, recorded in the image's label: a change to it makes a new image.
RECIPE="1 $SUITE minbase python3 $EXTRA_PACKAGES"
LABEL=org.mfrm.localwhisk.recipe

say() { printf 'localwhisk-image: %s\n' "$*"; }
die() { printf 'localwhisk-image: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: debootstrap and the engine's socket need it"
docker_cli() { docker --host "unix://$SOCKET" "$@"; }
docker_cli version >/dev/null 2>&1 || die "no Docker engine answers on $SOCKET: run scripts/docker-engine.sh first"

current_recipe() { docker_cli image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true; }

if [ "$(current_recipe)" = "$RECIPE" ]; then
    say "ready: $IMAGE ($(docker_cli image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}'))"
    exit 0
fi

if ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then
    say "installing debootstrap (Debian)"
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null
fi
DEBOOTSTRAP=$(command -v debootstrap || echo /usr/sbin/debootstrap)

WORK=$(mktemp -d /var/tmp/localwhisk-image.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root
includes=python3
for package in $EXTRA_PACKAGES; do includes="$includes,$package"; done

say "making $IMAGE: debootstrap $SUITE (minbase, $includes) from $MIRROR"
"$DEBOOTSTRAP" --variant=minbase --include="$includes" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
# What a container never uses: downloaded packages, package lists, documentation, manual pages.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc/* \
       "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/var/log/*
"$ROOT/usr/bin/python3" --version >/dev/null 2>&1 || chroot "$ROOT" python3 --version >/dev/null \
    || die "the root file system has no working python3"

tar --numeric-owner -C "$ROOT" -c . | docker_cli import \
    --change "LABEL $LABEL=\"$RECIPE\"" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >/dev/null
[ "$(current_recipe)" = "$RECIPE" ] || die "docker import did not leave $IMAGE with its recipe label"
rm -rf "$WORK"  # here, so that the time below includes it
say "made $IMAGE in ${SECONDS} s ($(docker_cli image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}'))"
