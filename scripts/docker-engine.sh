#!/usr/bin/env bash
# A real Docker engine for the test suite, on this machine, without touching its network.
#
#   scripts/docker-engine.sh          start it if needed (idempotent), then print where it answers
#   scripts/docker-engine.sh stop     stop the engine this script started (by its PID file)
#
# What "started" means here, checked on every run and repaired when missing:
#   * Debian's docker.io (dockerd, containerd, runc), busybox-static, openssl and curl are installed;
#   * dockerd runs as root with no bridge, no iptables, no IP forwarding or masquerading, and answers
#     /_ping on the unix socket and, with mutual TLS, on a loopback TCP port;
#   * a local CA, a server certificate for 127.0.0.1 and a client certificate exist (plus a client
#     folder whose ca.pem is another CA, for tests that a wrong CA is refused);
#   * the image mfrm-test/busybox:1 exists (busybox-static imported: nothing can be pulled here);
#   * an env file (KEY=VALUE lines) says where all of this is; the tests read it.
# When all of it is already true the script only checks and prints (well under a second).
#
# Environment: TEST_DOCKER_STATE_DIR (default /var/lib/mfrm-docker-engine) and TEST_DOCKER_TLS_PORT
# (default 23760) move the state folder and the TLS port; nothing else is read.
set -euo pipefail

STATE_DIR=${TEST_DOCKER_STATE_DIR:-/var/lib/mfrm-docker-engine}
TLS_PORT=${TEST_DOCKER_TLS_PORT:-23760}
SOCKET=/var/run/docker.sock
IMAGE=mfrm-test/busybox:1
PID_FILE=$STATE_DIR/dockerd.pid
LOG_FILE=$STATE_DIR/dockerd.log
ENV_FILE=$STATE_DIR/env
TLS_DIR=$STATE_DIR/tls
READY_DEADLINE_S=60  # dockerd answers in about 0.5 s on an idle machine; 2 shared cores can be slow
STOP_DEADLINE_S=20

say() { printf 'docker-engine: %s\n' "$*"; }
die() { printf 'docker-engine: error: %s\n' "$*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "run as root: dockerd, apt-get and the engine's state under $STATE_DIR need it"
}

# --- packages -------------------------------------------------------------------------------------

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

install_missing() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    installed busybox-static || missing+=(busybox-static)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v curl >/dev/null || missing+=(curl)
    [ ${#missing[@]} -eq 0 ] && return
    say "installing ${missing[*]} (Debian)"
    # The package's own service start would run dockerd with a bridge and iptables rules on the host
    # network: keep services from starting during the install unless a policy already does.
    local policy=/usr/sbin/policy-rc.d added_policy=no
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=yes
    fi
    local status=0
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
        >"$STATE_DIR/apt.log" 2>&1 || status=$?
    [ "$added_policy" = yes ] && rm -f "$policy"
    [ "$status" -eq 0 ] || { tail -n 20 "$STATE_DIR/apt.log" >&2; die "apt-get failed (status $status), log in $STATE_DIR/apt.log"; }
}

static_busybox() {
    local path
    path=$(dpkg -L busybox-static | grep -E '/bin/busybox$' | head -n 1)
    [ -x "$path" ] || die "busybox-static is installed but its /bin/busybox was not found"
    printf '%s\n' "$path"
}

# --- certificates ---------------------------------------------------------------------------------

new_ca() {  # folder, common name
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 3650 \
        -subj "/CN=$2" -keyout "$1/ca-key.pem" -out "$1/ca.pem" 2>/dev/null
}

signed_cert() {  # ca folder, output prefix, common name, extensions
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=$3" \
        -keyout "$2-key.pem" -out "$2.csr" 2>/dev/null
    openssl x509 -req -in "$2.csr" -CA "$1/ca.pem" -CAkey "$1/ca-key.pem" -CAcreateserial -days 3650 \
        -extfile <(printf '%s\n' "$4") -out "$2-cert.pem" 2>/dev/null
    rm -f "$2.csr"
}

ensure_certs() {
    local want
    for want in ca/ca.pem server/cert.pem server/key.pem client/ca.pem client/cert.pem client/key.pem \
                client-wrong-ca/ca.pem client-wrong-ca/cert.pem client-wrong-ca/key.pem; do
        [ -s "$TLS_DIR/$want" ] || { make_certs; return; }
    done
}

make_certs() {
    say "making a local CA and the engine's and the client's certificates in $TLS_DIR"
    local work=$TLS_DIR.new
    rm -rf "$work" && mkdir -p "$work"/{ca,other-ca,server,client,client-wrong-ca}
    (
        umask 077
        new_ca "$work/ca" "mfrm test Docker CA"
        new_ca "$work/other-ca" "mfrm test CA that signed nothing of the engine"
        signed_cert "$work/ca" "$work/server/server" "127.0.0.1" \
            "$(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature')"
        signed_cert "$work/ca" "$work/client/client" "mfrm" \
            "$(printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature')"
    )
    mv "$work/server/server-cert.pem" "$work/server/cert.pem"
    mv "$work/server/server-key.pem" "$work/server/key.pem"
    # The layout mfrm's openwhisk.docker_tls_dir expects: ca.pem, cert.pem, key.pem.
    mv "$work/client/client-cert.pem" "$work/client/cert.pem"
    mv "$work/client/client-key.pem" "$work/client/key.pem"
    cp "$work/ca/ca.pem" "$work/client/ca.pem"
    cp "$work/other-ca/ca.pem" "$work/client/cert.pem" "$work/client/key.pem" "$work/client-wrong-ca/"
    chmod 644 "$work"/*/ca.pem "$work"/*/cert.pem
    rm -rf "$TLS_DIR" && mv "$work" "$TLS_DIR"
}

# --- the engine -----------------------------------------------------------------------------------

socket_answers() {
    [ -S "$SOCKET" ] && [ "$(curl -sf --max-time 3 --unix-socket "$SOCKET" http://localhost/_ping 2>/dev/null)" = OK ]
}

tls_answers() {
    [ "$(curl -sf --max-time 3 --cacert "$TLS_DIR/client/ca.pem" --cert "$TLS_DIR/client/cert.pem" \
          --key "$TLS_DIR/client/key.pem" "https://127.0.0.1:$TLS_PORT/_ping" 2>/dev/null)" = OK ]
}

alive() {  # a process that runs (a killed one stays a zombie until its parent reaps it)
    [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

our_pid() {  # the PID of the dockerd this script started, if it still runs
    local pid
    [ -s "$PID_FILE" ] || return 1
    pid=$(cat "$PID_FILE")
    alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && printf '%s\n' "$pid"
}

stop_engine() {
    local pid waited=0
    pid=$(our_pid) || { rm -f "$PID_FILE"; return 0; }
    say "stopping dockerd (PID $pid)"
    kill -TERM "$pid"
    while alive "$pid" && [ "$waited" -lt $((STOP_DEADLINE_S * 10)) ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    alive "$pid" && die "dockerd (PID $pid) did not exit within $STOP_DEADLINE_S s of SIGTERM; log: $LOG_FILE"
    rm -f "$PID_FILE"
}

start_engine() {
    # PID files left by a dockerd or its containerd that are gone would stop the new ones: dockerd
    # refuses to start over its own, and waits for a containerd whose PID still exists, even as a zombie
    # (what a killed process is here until it is reaped).
    our_pid >/dev/null || rm -f "$PID_FILE"
    local containerd_pid_file=/var/run/docker/containerd/containerd.pid
    if [ -s "$containerd_pid_file" ] && ! alive "$(cat "$containerd_pid_file")"; then
        rm -f "$containerd_pid_file"
    fi
    say "starting dockerd (log: $LOG_FILE)"
    printf '\n--- %s: scripts/docker-engine.sh starts dockerd\n' "$(date -Is)" >>"$LOG_FILE"
    setsid dockerd \
        --host "unix://$SOCKET" --host "tcp://127.0.0.1:$TLS_PORT" \
        --tlsverify --tlscacert "$TLS_DIR/client/ca.pem" \
        --tlscert "$TLS_DIR/server/cert.pem" --tlskey "$TLS_DIR/server/key.pem" \
        --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
        --pidfile "$PID_FILE" </dev/null >>"$LOG_FILE" 2>&1 &
    local pid=$! tries=0
    until socket_answers && tls_answers; do
        if ! alive "$pid"; then
            tail -n 20 "$LOG_FILE" >&2
            die "dockerd exited before answering; log: $LOG_FILE"
        fi
        [ "$tries" -ge $((READY_DEADLINE_S * 5)) ] && die "dockerd (PID $pid) did not answer within $READY_DEADLINE_S s; log: $LOG_FILE"
        sleep 0.2
        tries=$((tries + 1))
    done
}

ensure_engine() {
    if socket_answers; then
        tls_answers && return
        # An engine answers, but not with this script's TLS endpoint (other certificates or port).
        our_pid >/dev/null || die "an engine this script did not start answers on $SOCKET without TLS on" \
            "127.0.0.1:$TLS_PORT; stop that engine and run this script again"
        stop_engine
    elif our_pid >/dev/null; then
        stop_engine  # ours, but not answering: start afresh
    fi
    start_engine
}

# --- the image ------------------------------------------------------------------------------------

ensure_image() {
    curl -sf --max-time 5 --unix-socket "$SOCKET" "http://localhost/images/$IMAGE/json" >/dev/null && return
    say "making $IMAGE from busybox-static (docker import)"
    local root applet
    root=$(mktemp -d)
    mkdir -p "$root/bin" "$root/tmp" && chmod 1777 "$root/tmp"
    cp "$(static_busybox)" "$root/bin/busybox"
    for applet in $("$root/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
    done
    tar -C "$root" -c . | docker --host "unix://$SOCKET" import --change 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
    rm -rf "$root"
}

# --- what the tests read --------------------------------------------------------------------------

write_env() {
    cat >"$ENV_FILE.new" <<EOF
# Written by scripts/docker-engine.sh: where the test suite's Docker engine answers.
TEST_DOCKER_SOCKET=unix://$SOCKET
TEST_DOCKER_TLS_URL=tcp://127.0.0.1:$TLS_PORT
TEST_DOCKER_TLS_DIR=$TLS_DIR/client
TEST_DOCKER_WRONG_CA_TLS_DIR=$TLS_DIR/client-wrong-ca
TEST_DOCKER_IMAGE=$IMAGE
TEST_DOCKERD_PID=$(our_pid)
TEST_DOCKERD_LOG=$LOG_FILE
EOF
    mv "$ENV_FILE.new" "$ENV_FILE"
}

main() {
    case "${1:-start}" in
        start) ;;
        stop) require_root; stop_engine; say "stopped"; return ;;
        *) die "unknown command '$1': use 'start' (the default) or 'stop'" ;;
    esac
    require_root
    mkdir -p "$STATE_DIR"
    install_missing
    ensure_certs
    ensure_engine
    ensure_image
    write_env
    say "ready in ${SECONDS} s: socket unix://$SOCKET, TLS tcp://127.0.0.1:$TLS_PORT with the client" \
        "certificates in $TLS_DIR/client, image $IMAGE, dockerd PID $(our_pid), env file $ENV_FILE"
}

main "$@"
