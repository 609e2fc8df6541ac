#!/usr/bin/env bash
# The demo pipeline, README's first command. As root on a fresh Debian machine:
#
#   node_exporter --HTTP--> promrelay (poller) --JetStream--> nats-server
#       --> promrelay (receiver) --HTTP PUT--> Pushgateway
#
# Installs what is missing (Debian packages nats-server, prometheus-pushgateway,
# prometheus-node-exporter), builds promrelay in release mode, starts every piece on free loopback
# ports in a temp directory, waits until node_exporter's series arrive in the Pushgateway and says
# how many and where to look. Ctrl-C stops everything it started.
#
# Options:
#   --once      (or DEMO_ONCE=1) exit 0 as soon as the series have arrived (non-interactive check)
# Environment:
#   PROMRELAY_BIN=path  use this promrelay binary instead of building one
#   DEMO_KEEP=1         keep the temp directory (configs, logs) after stopping
#   DEMO_TIMEOUT=secs   how long to wait for the series (default 180)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

once="${DEMO_ONCE:-0}"
for argument in "$@"; do
    case "$argument" in
        --once) once=1 ;;
        -h | --help)
            sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "demo.sh: unknown argument $argument (try --help)" >&2
            exit 2
            ;;
    esac
done
timeout_seconds="${DEMO_TIMEOUT:-180}"

NATS_SERVER=/usr/sbin/nats-server
PUSHGATEWAY=/usr/bin/prometheus-pushgateway
NODE_EXPORTER=/usr/bin/prometheus-node-exporter

say() { printf '==> %s\n' "$*"; }
fail() {
    printf 'demo.sh: %s\n' "$*" >&2
    exit 1
}

# --- what we started, stopped on any exit -------------------------------------------------------
pids=()
names=()
workdir=""
sleeper=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [[ -n "$sleeper" ]] && kill "$sleeper" 2>/dev/null || true
    if ((${#pids[@]} > 0)); then
        say "stopping ${names[*]}"
        local index
        # promrelay was started last: stop it first, so it flushes while the servers still run.
        for ((index = ${#pids[@]} - 1; index >= 0; index--)); do
            kill -TERM "${pids[index]}" 2>/dev/null || true
            for _ in $(seq 1 100); do
                kill -0 "${pids[index]}" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "${pids[index]}" 2>/dev/null || true
            wait "${pids[index]}" 2>/dev/null || true
        done
    fi
    if [[ -n "$workdir" && -d "$workdir" ]]; then
        if [[ "${DEMO_KEEP:-0}" == 1 ]]; then
            say "kept $workdir (configs and logs)"
        else
            rm -rf "$workdir"
        fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts "$@" in the background as its own process (never `a && b &`, whose $! is a subshell),
# with output in $workdir/<name>.log, and remembers its PID.
start() {
    local name=$1
    shift
    "$@" >"$workdir/$name.log" 2>&1 &
    pids+=($!)
    names+=("$name")
    say "$name started (pid $!)"
}

# Fails with the log's tail if a started process has exited.
check_alive() {
    local index
    for index in "${!pids[@]}"; do
        if ! kill -0 "${pids[index]}" 2>/dev/null; then
            echo "--- last lines of $workdir/${names[index]}.log ---" >&2
            tail -n 30 "$workdir/${names[index]}.log" >&2 || true
            fail "${names[index]} exited unexpectedly"
        fi
    done
}

# HTTP GET with bash alone (no curl on a minimal machine): prints the body, fails unless 2xx.
http_get() {
    local port=$1 path=$2 answer status
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\nUser-Agent: promrelay-demo\r\n\r\n' "$path" "$port" >&3
    answer=$(timeout 10 cat <&3) || {
        exec 3<&-
        return 1
    }
    exec 3<&-
    status=${answer#* }
    status=${status%% *}
    [[ $status == 2* ]] || return 1
    printf '%s\n' "${answer#*$'\r\n\r\n'}"
}

# Waits until GET 127.0.0.1:port/path answers 2xx.
wait_http() {
    local what=$1 port=$2 path=$3
    for _ in $(seq 1 200); do
        if http_get "$port" "$path" >/dev/null 2>&1; then
            return 0
        fi
        check_alive
        sleep 0.1
    done
    fail "$what did not answer on 127.0.0.1:$port$path"
}

# A TCP port on 127.0.0.1 nobody listens on, not handed out before by this script.
used_ports=" "
free_port() {
    local port
    while true; do
        port=$((20000 + RANDOM % 40000))
        [[ "$used_ports" == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            used_ports+="$port "
            echo "$port"
            return 0
        fi
    done
}

# --- install what is missing --------------------------------------------------------------------
missing=()
[[ -x $NATS_SERVER ]] || missing+=(nats-server)
[[ -x $PUSHGATEWAY ]] || missing+=(prometheus-pushgateway)
[[ -x $NODE_EXPORTER ]] || missing+=(prometheus-node-exporter)
if ((${#missing[@]} > 0)); then
    [[ $EUID -eq 0 ]] || fail "missing Debian packages ${missing[*]}: run as root to install them"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
fi

# --- build promrelay ----------------------------------------------------------------------------
if [[ -n "${PROMRELAY_BIN:-}" ]]; then
    promrelay="$PROMRELAY_BIN"
else
    if ! command -v cargo >/dev/null 2>&1; then
        [[ $EUID -eq 0 ]] || fail "no cargo on PATH: install Rust (rustup), or run as root to install Debian's cargo-web"
        say "installing Debian's Rust toolchain (cargo-web, rustc-web)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q cargo-web rustc-web
    fi
    # The `demo` profile: unoptimised, no debug info — the fastest build that runs the pipeline.
    # For production, `cargo build --release` (or the Debian package).
    say "building promrelay (profile demo, unoptimised: the first build takes a few minutes)"
    cargo build --profile demo -p promrelay --bin promrelay
    target_dir="${CARGO_TARGET_DIR:-target}"
    [[ "$target_dir" = /* ]] || target_dir="$PWD/$target_dir"
    promrelay="$target_dir/demo/promrelay"
fi
[[ -x "$promrelay" ]] || fail "no promrelay binary at $promrelay"

# --- start the pipeline -------------------------------------------------------------------------
workdir=$(mktemp -d /tmp/promrelay-demo.XXXXXX)
nats_port=$(free_port)
nats_monitor_port=$(free_port)
pushgateway_port=$(free_port)
node_exporter_port=$(free_port)
monitor_port=$(free_port)

say "starting nats-server (JetStream) on 127.0.0.1:$nats_port"
start nats-server "$NATS_SERVER" -js -sd "$workdir/jetstream" -a 127.0.0.1 \
    -p "$nats_port" -m "$nats_monitor_port"
say "starting the Pushgateway on 127.0.0.1:$pushgateway_port"
start pushgateway "$PUSHGATEWAY" "--web.listen-address=127.0.0.1:$pushgateway_port" \
    "--persistence.file=$workdir/pushgateway.db"
say "starting node_exporter on 127.0.0.1:$node_exporter_port"
start node-exporter "$NODE_EXPORTER" "--web.listen-address=127.0.0.1:$node_exporter_port"

wait_http nats-server "$nats_monitor_port" /healthz
wait_http "the Pushgateway" "$pushgateway_port" /-/ready
wait_http node_exporter "$node_exporter_port" /metrics

cat >"$workdir/promrelay.yaml" <<YAML
---
# The demo: one promrelay runs both halves. A site's poller and the central receiver would
# normally be two processes in two places, sharing only the NATS stream.
verbose: true
identity: demo
scrape_interval: 5s
max_age: 80
monitor_port: $monitor_port
monitor_address: 127.0.0.1
poller_stream:
  cluster_id: demo_stream
  urls: nats://127.0.0.1:$nats_port
  topic: prometheus
receiver_stream:
  client_id: demo_receiver
  cluster_id: demo_stream
  urls: nats://127.0.0.1:$nats_port
  topic: prometheus
push_gateway:
  url: http://127.0.0.1:$pushgateway_port
  publisher_label: true
jobs:
  node:
    targets:
      - name: node1
        url: http://127.0.0.1:$node_exporter_port/metrics
YAML

say "starting promrelay run --config $workdir/promrelay.yaml"
start promrelay "$promrelay" run --config "$workdir/promrelay.yaml"

# --- wait for node_exporter's series in the Pushgateway -----------------------------------------
# Counts pushed samples of a job, without the Pushgateway's own per-group bookkeeping series.
count_series() {
    local job=$1 text
    text=$(http_get "$pushgateway_port" /metrics 2>/dev/null) || {
        echo 0
        return 0
    }
    # `[{,]job=` and not `exported_job=`: promrelay's own series name jobs in an exported label.
    grep -v '^#' <<<"$text" | grep -E "[{,]job=\"$job\"" |
        grep -cvE '^(push_time_seconds|push_failure_time_seconds)\{' || true
}

say "waiting for node_exporter's series to arrive in the Pushgateway"
arrived=0
for ((waited = 0; waited < timeout_seconds * 2; waited++)); do
    arrived=$(count_series node)
    ((arrived > 0)) && break
    check_alive
    sleep 0.5
done
((arrived > 0)) || fail "no series arrived within ${timeout_seconds}s; logs are in $workdir (DEMO_KEEP=1 keeps them)"

# promrelay scrapes itself too (job="promrelay", because monitor_port is set): give its first
# scrape a moment to arrive as well, without failing the demo for it.
own=0
for ((waited = 0; waited < 30; waited++)); do
    own=$(count_series promrelay)
    ((own > 0)) && break
    check_alive
    sleep 0.5
done
cat <<EOF

  $arrived node_exporter series arrived in the Pushgateway (job="node", instance="node1",
  publisher="demo"), relayed through NATS JetStream; plus $own of promrelay's own (job="promrelay").

  Look at them:  http://127.0.0.1:$pushgateway_port/metrics   (web UI: http://127.0.0.1:$pushgateway_port/)
  promrelay:     http://127.0.0.1:$monitor_port/metrics
  Config, logs:  $workdir

EOF

if [[ "$once" == 1 ]]; then
    exit 0
fi

say "running; press Ctrl-C to stop everything the demo started"
while true; do
    # `wait` returns as soon as a trapped signal arrives; a foreground `sleep` would delay the trap.
    sleep 10 &
    sleeper=$!
    wait "$sleeper" || true
    check_alive
    say "$(count_series node) node_exporter series in the Pushgateway"
done
