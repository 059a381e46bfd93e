# bench/lib.sh — shared by bench/compare and bench/instructions (sourced, not run).
#
# Process bookkeeping (start in the background, record in PID[name], kill on exit) and the
# configs both benchmarks give nginx, HAProxy and weir. Before sourcing, set BENCH_NAME (used in
# messages). bench_start_tmp creates the temp dir $T and installs the exit trap.
# shellcheck shell=bash

: "${BENCH_NAME:=bench}"
declare -A PID=()
READY_WAIT_S=15 # how long wait_ready polls; raise it for slow starters (valgrind)

# alive PID: running and not a zombie (our exited children stay zombies until reaped)
alive() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [[ ${s:0:1} != Z ]]
}

# stop NAME [SECONDS]: SIGTERM, a bounded wait for the exit, then SIGKILL. Forgets the process.
stop() {
    local p=${PID[$1]:-} i
    [[ -n $p ]] || return 0
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < ${2:-5} * 10; i++)); do alive "$p" || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    unset "PID[$1]"
}

bench_cleanup() {
    local rc=$? name
    for name in "${!PID[@]}"; do kill -TERM "${PID[$name]}" 2>/dev/null || true; done
    for name in "${!PID[@]}"; do stop "$name"; done
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
        echo "$BENCH_NAME: temp dir kept: $T" >&2
    else
        rm -rf "$T"
    fi
    exit "$rc"
}

# A temp dir for configs and process logs, removed on exit (BENCH_KEEP=1 keeps it).
bench_start_tmp() {
    T="$(mktemp -d "${TMPDIR:-/tmp}/weir-$1.XXXXXX")"
    chmod 755 "$T" # nginx workers may run as an unprivileged user
    mkdir -p "$T/nginx-tmp"
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# refuse_busy_ports PORT...: exit 1 when one of them is taken.
refuse_busy_ports() {
    local p
    for p in "$@"; do
        if port_in_use "$p"; then
            echo "$BENCH_NAME: 127.0.0.1:$p is already in use (a previous run, or a system nginx/haproxy?)" >&2
            exit 1
        fi
    done
}

# the last lines of a process's stdout/stderr log (and nginx's error log)
show_logs() {
    local f
    for f in "$T/$1.log" "$T/$1.err"; do
        [[ -s $f ]] && { echo "--- $f"; tail -n 20 "$f"; }
    done
    return 0
}

# wait_ready NAME URL [curl args...]: bounded poll (READY_WAIT_S) until URL answers 2xx while
# the process lives.
wait_ready() {
    local name=$1 url=$2; shift 2
    local code=000 deadline=$((SECONDS + READY_WAIT_S))
    while ((SECONDS < deadline)); do
        if ! alive "${PID[$name]}"; then
            echo "$BENCH_NAME: $name exited during startup; its log:" >&2
            show_logs "$name" >&2
            return 1
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" || true)
        [[ $code == 2?? ]] && return 0
        sleep 0.1
    done
    echo "$BENCH_NAME: $name did not answer $url with 2xx within $READY_WAIT_S s (last: HTTP $code); its log:" >&2
    show_logs "$name" >&2
    return 1
}

# ---- configs ------------------------------------------------------------------------------------
nginx_common() { # $1 = instance name
    cat <<EOF
pid $T/$1.pid;
error_log $T/$1.err warn;
events { worker_connections 4096; }
EOF
}
nginx_http_common() {
    cat <<EOF
    access_log off;
    client_body_temp_path $T/nginx-tmp/body;
    proxy_temp_path $T/nginx-tmp/proxy;
    fastcgi_temp_path $T/nginx-tmp/fastcgi;
    uwsgi_temp_path $T/nginx-tmp/uwsgi;
    scgi_temp_path $T/nginx-tmp/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
EOF
}

# nginx_upstream_conf H1_PORT [H2C_PORT]: the upstream every proxy talks to: 1 worker,
# `return 200 "ok\n"`, keep-alive; optionally a second server with h2c prior knowledge
# (nginx 1.22 cannot serve HTTP/1.1 and h2c on one plain-text port).
nginx_upstream_conf() {
    echo "worker_processes 1;"
    nginx_common upstream
    echo "http {"
    nginx_http_common
    cat <<EOF
    server {
        listen 127.0.0.1:$1;
        location / { default_type text/plain; return 200 "ok\n"; }
    }
EOF
    if [[ -n ${2:-} ]]; then
        cat <<EOF
    server {
        listen 127.0.0.1:$2 http2;
        location / { default_type text/plain; return 200 "ok\n"; }
    }
EOF
    fi
    echo "}"
}

# haproxy_cfg PORT UPSTREAM_PORT: one thread, mode http, http-reuse always, no logging. HAProxy
# detects the HTTP/2 preface on a clear-text bind, so h2c shares the HTTP/1.1 port.
haproxy_cfg() {
    cat <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend bench
    bind 127.0.0.1:$1
    default_backend upstream
backend upstream
    server s1 127.0.0.1:$2
EOF
}

# weir_config WORKLOAD PORT ADMIN_PORT UPSTREAM_PORT LEVEL ACCESS_LOG [resilience]: one listener,
# route `all` to service `upstream` (round_robin, http1). ACCESS_LOG is true or false and always
# written out: the default is not part of what a benchmark should depend on. With `resilience`
# the service also gets a circuit breaker and outlier detection and the route retries (the values
# of DESIGN §3), none of which ever fires here: the upstream always answers 200.
weir_config() {
    local workload=$1 port=$2 admin=$3 upstream=$4 level=$5 access_log=$6 extra=${7:-}
    [[ $access_log == true || $access_log == false ]] || {
        echo "$BENCH_NAME: weir_config: access_log must be true or false, not '$access_log'" >&2
        return 1
    }
    cat <<EOF
version: 1
node: { service: bench, namespace: bench, workload: $workload }
admin: { address: 127.0.0.1:$admin }
listeners:
  - name: bench
    address: 127.0.0.1:$port
    protocol: http
    routes:
      - name: all
        match: { path: { prefix: / } }
        backends: [{ service: upstream }]
EOF
    if [[ $extra == resilience ]]; then
        cat <<'EOF'
        retries: { attempts: 2, per_try_timeout: 1s, on: [connect-failure, reset, gateway-error], budget_percent: 20 }
EOF
    fi
    cat <<EOF
services:
  - name: upstream
    endpoints: [127.0.0.1:$upstream]
    load_balancer: round_robin
    protocol: http1
EOF
    if [[ $extra == resilience ]]; then
        cat <<'EOF'
    circuit_breaker:
      { window: 10s, buckets: 10, request_volume_threshold: 20, error_threshold_percent: 50, sleep_window: 5s, half_open_requests: 1 }
    outlier_detection:
      { consecutive_5xx: 5, consecutive_gateway_errors: 5, interval: 10s, base_ejection_time: 30s, max_ejection_percent: 10 }
EOF
    fi
    if [[ $extra == trace:* ]]; then
        # Tracing at the given sampling percentage, exporting to the upstream nginx, which
        # answers any POST with 200: a local collector that costs the proxy what a real
        # one would (one HTTP/1.1 POST per batch).
        cat <<EOF
tracing:
  propagation: [w3c]
  sampling_percent: ${extra#trace:}
  otlp: { endpoint: "http://127.0.0.1:$upstream/v1/traces", batch_size: 512, queue_size: 2048 }
EOF
    fi
    echo "logging: { level: $level, format: text, access_log: $access_log }"
}

# build_weir ROOT: sets WEIR_BIN, building the release binary unless WEIR_BIN is already set.
build_weir() {
    if [[ -n "${WEIR_BIN:-}" ]]; then
        [[ -x "$WEIR_BIN" ]] || { echo "$BENCH_NAME: WEIR_BIN=$WEIR_BIN is not an executable" >&2; exit 1; }
        return 0
    fi
    echo "== building weir (cargo build --release --bin weir)" >&2
    (cd "$1" && cargo build --release --bin weir)
    WEIR_BIN="${CARGO_TARGET_DIR:-$1/target}/release/weir"
    [[ "$WEIR_BIN" == /* ]] || WEIR_BIN="$1/$WEIR_BIN"
}
