#!/usr/bin/env bash
# Soak: poller and receiver (separate processes) relay TARGETS targets into a real Prometheus
# through remote_write while the broker is restarted every RESTART_SECONDS. Reports RSS and open
# fds of both at start and end, and scrapes made (served by the targets) against scrapes stored in
# Prometheus (each scrape's sample keeps its timestamp, so a lost scrape is a missing sample).
# Not part of the test suite.
#   scripts/soak.sh [DURATION_SECONDS=1800] [RESTART_SECONDS=300] [TARGETS=50] [INTERVAL_SECONDS=10]
# PROMRELAY_BIN picks the promrelay binary (default: target/release/promrelay, built if missing);
# SKIP_BUILD=1 uses the scale_targets binary already built.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-1800}" restart="${2:-300}" targets="${3:-50}" interval="${4:-10}"
target_dir="${CARGO_TARGET_DIR:-target}"
if [[ -z "${PROMRELAY_BIN:-}" ]]; then
    cargo build --release -p promrelay --bin promrelay
    PROMRELAY_BIN="$target_dir/release/promrelay"
fi
[[ -n "${SKIP_BUILD:-}" ]] || cargo build -q -p promrelay-tests --bin scale_targets
work="$(mktemp -d /tmp/soak-XXXXXX)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_tcp() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }

"$target_dir/debug/scale_targets" "$work/port" "$interval" & pids+=($!)
for _ in $(seq 100); do [[ -s "$work/port" ]] && break; sleep 0.1; done
port="$(cat "$work/port")"
nats_port="$(free_port)" prom_port="$(free_port)"
start_nats() {
    /usr/sbin/nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/js" >>"$work/nats.log" 2>&1 &
    nats=$!
    pids+=($nats)
    wait_tcp "$nats_port"
}
start_nats
printf 'global:\n  scrape_interval: 1h\n' >"$work/prometheus.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" --web.enable-remote-write-receiver \
    >"$work/prometheus.log" 2>&1 & pids+=($!)
wait_tcp "$prom_port"

{
    echo "identity: soak"
    echo "scrape_interval: ${interval}s"
    echo "poller_stream: {cluster_id: SOAK, urls: 'nats://127.0.0.1:$nats_port', retention: 1h}"
    echo "receiver_stream: {cluster_id: SOAK, urls: 'nats://127.0.0.1:$nats_port', retention: 1h, client_id: soak}"
    echo "remote_write: [{url: 'http://127.0.0.1:$prom_port/api/v1/write'}]"
    echo "jobs:"
    echo "  bench:"
    echo "    targets:"
    for n in $(seq 0 $((targets - 1))); do
        echo "      - {name: t$n, url: 'http://127.0.0.1:$port/t/$n'}"
    done
} >"$work/promrelay.yaml"
RUST_LOG=warn "$PROMRELAY_BIN" receiver --config "$work/promrelay.yaml" >"$work/receiver.log" 2>&1 & receiver=$!
pids+=($receiver)
RUST_LOG=warn "$PROMRELAY_BIN" poller --config "$work/promrelay.yaml" >"$work/poller.log" 2>&1 & poller=$!
pids+=($poller)

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
served() { curl -s "http://127.0.0.1:$port/stats" | awk '/^total/ {print $2}'; }
query() {
    curl -s "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)'
}
stored() { query "sum(count_over_time(bench_scrapes_total[$((duration + 600))s]))"; }
# Each target numbers its answers (bench_scrapes_total = n for its n-th request): the newest
# number stored per target tells a scrape missing between stored ones (lost in the pipeline)
# from one served after the newest stored (the poller's request in flight at its SIGTERM).
numbered() { query "sum(max_over_time(bench_scrapes_total[$((duration + 600))s]))"; }
sleep $((interval * 2))
echo "start: poller RSS $(rss "$poller") KiB, fds $(fds "$poller"); receiver RSS $(rss "$receiver") KiB, fds $(fds "$receiver")"
started=$SECONDS next_restart=$restart restarts=0
while (( SECONDS - started < duration )); do
    sleep 1
    if (( SECONDS - started >= next_restart && SECONDS - started < duration )); then
        kill "$nats"; wait "$nats" 2>/dev/null || true
        sleep 2
        start_nats
        restarts=$((restarts + 1)) next_restart=$((next_restart + restart))
        echo "broker restarted at $((SECONDS - started)) s"
    fi
done
echo "end:   poller RSS $(rss "$poller") KiB, fds $(fds "$poller"); receiver RSS $(rss "$receiver") KiB, fds $(fds "$receiver")"
# Stop the poller (it publishes what it holds), then let the receiver catch up.
kill -TERM "$poller"; wait "$poller" 2>/dev/null || true
made="$(served)"
for _ in $(seq 120); do
    [[ "$(stored)" == "$made" ]] && break
    sleep 1
done
echo "soak ${duration}s, ${restarts} broker restarts, $targets targets at ${interval}s: scrapes made $made, stored $(stored)"
echo "missing between stored scrapes (lost): $(( $(numbered) - $(stored) )); served after each target's newest stored scrape (in flight at the poller's SIGTERM): $(( made - $(numbered) ))"
grep -i "lost\|shutdown" "$work/poller.log" | head -5 || true
