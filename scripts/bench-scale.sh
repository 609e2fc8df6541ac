#!/usr/bin/env bash
# One poller, many targets: CPU per target (from /proc/PID/stat), RSS, and how the scrape starts
# spread over the interval. Not part of the test suite.
#   scripts/bench-scale.sh [TARGETS=1000] [INTERVAL_SECONDS=10] [MEASURE_SECONDS=60]
# PROMRELAY_BIN picks the promrelay binary (default: target/release/promrelay, built if missing);
# SKIP_BUILD=1 uses the scale_targets binary already built.
set -euo pipefail
cd "$(dirname "$0")/.."
targets="${1:-1000}" interval="${2:-10}" measure="${3:-60}"
target_dir="${CARGO_TARGET_DIR:-target}"
if [[ -z "${PROMRELAY_BIN:-}" ]]; then
    cargo build --release -p promrelay --bin promrelay
    PROMRELAY_BIN="$target_dir/release/promrelay"
fi
[[ -n "${SKIP_BUILD:-}" ]] || cargo build -q -p promrelay-tests --bin scale_targets
work="$(mktemp -d /tmp/bench-scale-XXXXXX)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_file() { for _ in $(seq 100); do [[ -s "$1" ]] && return; sleep 0.1; done; echo "no $1" >&2; exit 1; }

"$target_dir/debug/scale_targets" "$work/port" "$interval" & pids+=($!)
wait_file "$work/port"
port="$(cat "$work/port")"
nats_port="$(free_port)"
/usr/sbin/nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/js" >"$work/nats.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break; sleep 0.1; done

{
    echo "identity: bench"
    echo "scrape_interval: ${interval}s"
    echo "poller_stream: {cluster_id: BENCH_SCALE, urls: 'nats://127.0.0.1:$nats_port', retention: 2m}"
    echo "jobs:"
    echo "  bench:"
    echo "    targets:"
    for n in $(seq 0 $((targets - 1))); do
        echo "      - {name: t$n, url: 'http://127.0.0.1:$port/t/$n'}"
    done
} >"$work/promrelay.yaml"
RUST_LOG=warn "$PROMRELAY_BIN" poller --config "$work/promrelay.yaml" >"$work/promrelay.log" 2>&1 & relay=$!
pids+=($relay)

ticks="$(getconf CLK_TCK)"
cpu() { awk '{print $14 + $15}' "/proc/$relay/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$relay/status"; }
stats() { curl -s "http://127.0.0.1:$port/stats"; }
# Warm-up: two intervals, so every target has been scraped.
sleep $((interval * 2))
cpu0="$(cpu)" total0="$(stats | awk '/^total/ {print $2}')"
stats | awk '/^offset_/ {print $2}' >"$work/offsets0"
sleep "$measure"
cpu1="$(cpu)" total1="$(stats | awk '/^total/ {print $2}')"
stats | awk '/^offset_/ {print $2}' >"$work/offsets1"
scrapes=$((total1 - total0))
cpu_seconds="$(echo "scale=3; ($cpu1 - $cpu0) / $ticks" | bc)"
echo "targets $targets, interval ${interval}s, measured ${measure}s, binary $PROMRELAY_BIN"
echo "scrapes served: $scrapes (expected about $((targets * measure / interval)))"
echo "poller CPU: ${cpu_seconds} s over ${measure} s = $(echo "scale=2; 100 * $cpu_seconds / $measure" | bc)% of a core"
echo "CPU per target: $(echo "scale=3; 1000 * $cpu_seconds / $measure / $targets" | bc) ms/s; per scrape $(echo "scale=3; 1000 * $cpu_seconds / $scrapes" | bc) ms"
echo "RSS: $(rss_kib) KiB; open fds: $(ls "/proc/$relay/fd" | wc -l)"
echo "scrape starts per second of the interval (spreading):"
paste "$work/offsets0" "$work/offsets1" | awk '{printf "  second %d: %d\n", NR - 1, $2 - $1}'
