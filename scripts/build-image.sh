#!/usr/bin/env bash
# Build the repository's Dockerfile with this machine's Docker engine, from a base made on this
# machine, with every Python package served from this machine.
#
#   scripts/build-image.sh        build (or bring up to date) the image; the last line names it
#
# Steps, each reused when it is already done:
#   1. the base image (scripts/make-base-image.sh: Debian bookworm + python3, made with debootstrap);
#   2. a wheelhouse: `pip download` (this machine's pip and its configuration) of the project's
#      dependencies, its build backend and the extra requirements the Dockerfile installs, for this
#      machine's Python (3.11, as in the base); downloaded again only when those requirements change;
#   3. scripts/serve-wheels.py serves the wheelhouse as a package index on 127.0.0.1 for the build;
#   4. `docker build` with the classic builder (DOCKER_BUILDKIT=0: no buildx here) and --network host,
#      so that pip inside the build reaches that index and nothing else: PIP_INDEX_URL and
#      TORCH_INDEX_URL both name it, and the base holds no certificate of this machine's proxy. The
#      engine's layer cache makes a build whose inputs did not change take seconds.
# A previous image of the same tag that the build replaced is removed; nothing else is touched.
#
# Environment (all optional):
#   MFRM_IMAGE            tag to build (default mfrm-ci/mfrm:<version in pyproject.toml>)
#   MFRM_BASE_IMAGE       base image tag (default: scripts/make-base-image.sh's)
#   MFRM_IMAGE_STATE_DIR  wheelhouse and build logs (default /var/cache/mfrm-image)
#   MFRM_WHEEL_PORT       port of the index on 127.0.0.1 (default 23771; a fixed port keeps the build
#                         arguments, and so the layer cache, the same from one build to the next)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
# The Python whose pip downloads the wheels: the one the project's commands use (`python`, as in the
# README), else python3. Its version must be the base's (3.11): wheels are chosen for it.
PYTHON=$(command -v python || command -v python3) || { echo "build-image: error: no python or python3 on PATH" >&2; exit 1; }

VERSION=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
IMAGE=${MFRM_IMAGE:-mfrm-ci/mfrm:$VERSION}
export MFRM_BASE_IMAGE=${MFRM_BASE_IMAGE:-mfrm-ci/python-base:3.11-bookworm}
STATE_DIR=${MFRM_IMAGE_STATE_DIR:-/var/cache/mfrm-image}
PORT=${MFRM_WHEEL_PORT:-23771}
WHEELS=$STATE_DIR/wheels
# What the Dockerfile installs beside pyproject.toml's dependencies (its `pip install -r
# /tmp/requirements.txt ...` line; tests/deploy/test_deploy_dockerfile.py checks that the two agree).
DOCKERFILE_EXTRA_REQUIREMENTS=("kubernetes>=37" "docker>=7.1")
READY_DEADLINE_S=30  # the index hashes ~350 MB of wheels before it answers: a few seconds

say() { printf 'build-image: %s\n' "$*" >&2; }
die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }

docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
    || die "no Docker engine answers on this machine's default socket; start one with scripts/docker-engine.sh"
mkdir -p "$STATE_DIR"

# --- 1. the base ----------------------------------------------------------------------------------
bash scripts/make-base-image.sh >&2

# --- 2. the wheelhouse ----------------------------------------------------------------------------
# The requirements, one a line: the project's dependencies and build backend from pyproject.toml,
# then the Dockerfile's extras. The project itself is built inside the image from its source.
requirements=$("$PYTHON" - "${DOCKERFILE_EXTRA_REQUIREMENTS[@]}" <<'EOF'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))
for requirement in project["build-system"]["requires"] + project["project"]["dependencies"] + sys.argv[1:]:
    print(requirement)
EOF
)
python_tag=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
key=$(printf '%s\n%s\n' "$python_tag" "$requirements" | sha256sum | cut -c 1-16)
if [ "$python_tag" != cp311 ]; then
    die "$PYTHON is $python_tag; the base image runs Python 3.11 (cp311), so the wheels its pip" \
        "downloads would not install there. Put a Python 3.11 first on PATH"
fi

if [ "$(cat "$WHEELS/.requirements-key" 2>/dev/null)" = "$key" ]; then
    say "wheelhouse $WHEELS is up to date ($(find "$WHEELS" -name '*.whl' | wc -l) wheels); reused"
else
    say "downloading the wheelhouse into $WHEELS (pip download, this machine's package index)"
    rm -rf "$WHEELS.new" && mkdir -p "$WHEELS.new"
    printf '%s\n' "$requirements" >"$WHEELS.new/requirements.txt"
    # Binary wheels only: the build stage has no compiler, and a wheel pip built here could link
    # against libraries the base does not have.
    "$PYTHON" -m pip download --quiet --dest "$WHEELS.new" --only-binary=:all: -r "$WHEELS.new/requirements.txt" \
        >"$STATE_DIR/pip-download.log" 2>&1 \
        || { tail -n 20 "$STATE_DIR/pip-download.log" >&2; die "pip download failed; log in $STATE_DIR/pip-download.log"; }
    # A CUDA build of torch brings nvidia-* and triton wheels (several GB) that the daemon never loads.
    cuda=$(find "$WHEELS.new" -maxdepth 1 \( -name 'nvidia_*' -o -name 'triton-*' \) -printf '%f\n' | head -n 3)
    [ -z "$cuda" ] || die "pip download took a CUDA build of torch (it brought $(echo $cuda | tr '\n' ' ')):" \
        "make pip find torch's CPU wheel (a find-links folder or PyTorch's CPU index in its configuration)"
    printf '%s\n' "$key" >"$WHEELS.new/.requirements-key"
    rm -rf "$WHEELS" && mv "$WHEELS.new" "$WHEELS"
    say "wheelhouse: $(find "$WHEELS" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELS" | cut -f 1)"
fi

# --- 3. the index on loopback ---------------------------------------------------------------------
INDEX_LOG=$STATE_DIR/index.log
"$PYTHON" scripts/serve-wheels.py "$WHEELS" --port "$PORT" >"$INDEX_LOG" 2>&1 &
INDEX_PID=$!
stop_index() { kill -TERM "$INDEX_PID" 2>/dev/null || true; wait "$INDEX_PID" 2>/dev/null || true; }
trap stop_index EXIT
tries=0
until grep -q '^serve-wheels: .* at http://' "$INDEX_LOG"; do
    kill -0 "$INDEX_PID" 2>/dev/null || { cat "$INDEX_LOG" >&2; die "the wheel index did not start (port $PORT: set MFRM_WHEEL_PORT to a free one)"; }
    [ "$tries" -ge $((READY_DEADLINE_S * 10)) ] && die "the wheel index did not answer within $READY_DEADLINE_S s; log: $INDEX_LOG"
    sleep 0.1
    tries=$((tries + 1))
done
INDEX_URL=http://127.0.0.1:$PORT/simple/
say "wheel index at $INDEX_URL (PID $INDEX_PID, log $INDEX_LOG)"

# --- 4. the build ---------------------------------------------------------------------------------
previous=$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
BUILD_LOG=$STATE_DIR/build.log
say "docker build -t $IMAGE (base $MFRM_BASE_IMAGE; log $BUILD_LOG)"
started=$SECONDS
DOCKER_BUILDKIT=0 docker build --network host \
    --build-arg "PYTHON_IMAGE=$MFRM_BASE_IMAGE" \
    --build-arg "PIP_INDEX_URL=$INDEX_URL" \
    --build-arg "TORCH_INDEX_URL=$INDEX_URL" \
    --build-arg "MFRM_VERSION=$VERSION" \
    --tag "$IMAGE" "$REPO" >"$BUILD_LOG" 2>&1 \
    || { tail -n 30 "$BUILD_LOG" >&2; die "docker build failed; log in $BUILD_LOG (index requests in $INDEX_LOG)"; }
build_s=$((SECONDS - started))
current=$(docker image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    docker image rm "$previous" >/dev/null 2>&1 && say "removed the image $IMAGE replaced (${previous:7:12})" || true
fi

missing=$(grep -o '"GET /simple/[^/]*/ HTTP/1.1" 404' "$INDEX_LOG" | grep -v '/simple/pip/' | cut -d/ -f3 | sort -u || true)
[ -z "$missing" ] || say "note: the build asked the index for packages it does not hold: $(echo $missing)"
size_b=$(docker image inspect --format '{{.Size}}' "$IMAGE")
say "built $IMAGE (${current:7:12}): $((size_b / 1000000)) MB, docker build ${build_s} s, all steps ${SECONDS} s"
printf '%s\n' "$IMAGE"
