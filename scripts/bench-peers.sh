#!/usr/bin/env bash
# Side by side: promrelay's poller, vmagent and the Prometheus agent scraping the same targets,
# each alone, one after the other, without relabel rules and with the same ten rules
# (filters/relabel/benches/typical_rules.yaml: promrelay runs them in the shipped relabel filter
# as a filter of the job's chain, vmagent and Prometheus as metric_relabel_configs). Per run: the
# agent's CPU (utime + stime from /proc/PID/stat) over a measured window after a warm-up, its RSS
# (VmRSS, sampled every second of the window), the scrapes and samples the targets served in the
# window, and what the agent sent on. Prints a markdown table at the end. Not part of the tests
# and never run by CI.
#
#   scripts/bench-peers.sh [TARGETS=20] [SERIES=5000] [INTERVAL=5s] [SECONDS=60]
#
# The four parameters can also come from the environment as TARGETS, SERIES, INTERVAL and WINDOW
# (bash owns the variable SECONDS). More environment:
#   PROMRELAY_BIN  the promrelay binary (default: $CARGO_TARGET_DIR/release/promrelay, built here)
#   RELABEL_WASM   the relabel filter (default: target/filters/relabel.wasm, built here)
#   PEER_TARGETS_BIN  the targets (default: $CARGO_TARGET_DIR/release/peer_targets, built here)
#   SKIP_BUILD=1   build nothing: use the binaries and filter already built
#   AGENTS         which agents, in order (default: "promrelay vmagent prometheus")
#   SETUPS         which setups (default: "none rules")
#   WARMUP         seconds between the first round of scrapes and the window (default: 2 intervals)
#   ENCODING       gzip (default: the targets gzip for an agent that asks, as node_exporter does,
#                  and all three ask) or identity (never compressed)
#   OUT            also write the table to this file
#
# Installs victoria-metrics (vmagent) and nginx with apt-get when they are missing. promrelay
# publishes into a real nats-server; vmagent and Prometheus remote_write into a private nginx
# that answers 204 to everything (a blackhole). Those sinks are not counted in an agent's CPU;
# their own CPU over the window is printed beside each run. Everything started here is stopped
# by PID when the script ends. With the defaults the whole run takes ~8 minutes plus builds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

targets="${1:-${TARGETS:-20}}"
series="${2:-${SERIES:-5000}}"
interval="${3:-${INTERVAL:-5s}}"
window="${4:-${WINDOW:-60}}"
interval="${interval%s}"
warmup="${WARMUP:-$((interval * 2))}"
agents="${AGENTS:-promrelay vmagent prometheus}"
setups="${SETUPS:-none rules}"
encoding="${ENCODING:-gzip}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
rules_file="$root/filters/relabel/benches/typical_rules.yaml"

missing=()
command -v vmagent >/dev/null || missing+=(victoria-metrics)
[[ -x /usr/sbin/nginx ]] || missing+=(nginx)
if ((${#missing[@]})); then
    echo "bench-peers: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
fi
for tool in /usr/sbin/nats-server /usr/bin/prometheus /usr/bin/vmagent /usr/sbin/nginx; do
    [[ -x $tool ]] || { echo "bench-peers: $tool is missing" >&2; exit 1; }
done

needed=()
if [[ " $agents " == *" promrelay "* ]]; then
    if [[ -z "${PROMRELAY_BIN:-}" ]]; then
        [[ -n "${SKIP_BUILD:-}" ]] || cargo build --release -p promrelay --bin promrelay
        PROMRELAY_BIN="$target_dir/release/promrelay"
    fi
    needed+=("$PROMRELAY_BIN")
    if [[ " $setups " == *" rules "* ]]; then
        if [[ -z "${RELABEL_WASM:-}" ]]; then
            [[ -n "${SKIP_BUILD:-}" ]] || bash scripts/build-filters.sh relabel
            RELABEL_WASM="$root/target/filters/relabel.wasm"
        fi
        needed+=("$RELABEL_WASM")
    fi
fi
if [[ -z "${PEER_TARGETS_BIN:-}" ]]; then
    [[ -n "${SKIP_BUILD:-}" ]] || cargo build --release -p promrelay-tests --bin peer_targets
    PEER_TARGETS_BIN="$target_dir/release/peer_targets"
fi
needed+=("$PEER_TARGETS_BIN")
for file in "${needed[@]}"; do
    [[ -e $file ]] || { echo "bench-peers: $file is missing (run without SKIP_BUILD)" >&2; exit 1; }
done
# The relay resolves a module path against its config file's directory.
[[ -z "${RELABEL_WASM:-}" ]] || RELABEL_WASM="$(realpath "$RELABEL_WASM")"

work="$(mktemp -d /tmp/bench-peers-XXXXXX)"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]+"${pids[@]}"}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]+"${pids[@]}"}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
    for _ in $(seq 200); do curl -sf -o /dev/null "$1" && return; sleep 0.1; done
    echo "bench-peers: $1 did not answer" >&2
    exit 1
}
ticks="$(getconf CLK_TCK)"
# cpu_ticks PID...: utime + stime of these processes, fields 14 and 15 of /proc/PID/stat (12 and
# 13 after the command name, which may hold spaces).
cpu_ticks() {
    local pid total=0 fields
    for pid in "$@"; do
        fields="$(sed 's/^.*) //' "/proc/$pid/stat")"
        total=$((total + $(echo "$fields" | awk '{print $12 + $13}')))
    done
    echo "$total"
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
now() { date +%s.%N; }

# The targets.
"$PEER_TARGETS_BIN" "$work/ports" "$targets" "$series" "$encoding" >"$work/targets.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s "$work/ports" ]] && break; sleep 0.1; done
mapfile -t ports <"$work/ports"
((${#ports[@]} == targets)) || { echo "bench-peers: targets did not start" >&2; exit 1; }
stats() { curl -sf "http://127.0.0.1:${ports[0]}/stats"; }
stat_of() { awk -v key="$1" '$1 == key {print $2}'; }
served_per_scrape="$(curl -sf "http://127.0.0.1:${ports[0]}/metrics" | grep -cv '^#')"
((served_per_scrape == series)) || echo "bench-peers: a target serves $served_per_scrape samples, not $series" >&2

# The sinks: nats-server for promrelay, an nginx blackhole for the others.
nats_port="$(free_port)" nats_monitor="$(free_port)"
/usr/sbin/nats-server -a 127.0.0.1 -p "$nats_port" -m "$nats_monitor" -js -sd "$work/js" \
    >"$work/nats.log" 2>&1 &
nats_pid=$!
pids+=($nats_pid)
wait_http "http://127.0.0.1:$nats_monitor/healthz"

nginx_port="$(free_port)"
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_max_body_size 0;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        location /api/v1/write { return 204; }
        location / { return 204; }
    }
}
EOF
/usr/sbin/nginx -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" -p "$work/nginx" \
    -g 'daemon off;' >"$work/nginx/stdout.log" 2>&1 &
nginx_pid=$!
pids+=($nginx_pid)
wait_http "http://127.0.0.1:$nginx_port/api/v1/write"
nginx_pids() { echo "$nginx_pid" $(pgrep -P "$nginx_pid" || true); }

# rules INDENT KEY: the ten rules, under KEY, indented for a YAML document.
rules() {
    echo "$1$2:"
    grep -v '^#' "$rules_file" | grep -v '^relabel_configs:' | sed "s/^/$1/"
}

# Scrape configs shared by vmagent and Prometheus (vmagent refuses unknown top-level keys, so
# Prometheus' remote_write is added to its copy only).
peer_config() {
    echo "global: {scrape_interval: ${interval}s, scrape_timeout: ${interval}s}"
    echo "scrape_configs:"
    echo "  - job_name: node"
    echo "    static_configs:"
    echo "      - targets:"
    for port in "${ports[@]}"; do echo "          - 127.0.0.1:$port"; done
    [[ $1 == none ]] || rules "    " metric_relabel_configs
}

promrelay_config() {
    echo "identity: bench"
    echo "scrape_interval: ${interval}s"
    echo "monitor_port: $monitor_port"
    echo "monitor_address: 127.0.0.1"
    # One stream for every run: a second stream on the same subjects would be refused.
    echo "poller_stream: {cluster_id: BENCH_PEERS, urls: 'nats://127.0.0.1:$nats_port', retention: 2m}"
    echo "jobs:"
    echo "  node:"
    echo "    targets:"
    for port in "${ports[@]}"; do echo "      - http://127.0.0.1:$port/metrics"; done
    if [[ $1 != none ]]; then
        # The shipped defaults: no limits, on_error drop.
        echo "    filters:"
        echo "      - name: relabel"
        echo "        module: $RELABEL_WASM"
        echo "        config:"
        rules "          " relabel_configs
    fi
}

# agent_metrics: the running agent's own /metrics.
agent_metrics() { curl -sf "http://127.0.0.1:$agent_port/metrics"; }

# metric_sum NAME [FILTER] <METRICS: the sum of a metric's samples whose line contains FILTER.
metric_sum() {
    awk -v name="$1" -v filter="${2:-}" '
        index($0, name) == 1 && (substr($0, length(name) + 1, 1) ~ /[{ ]/) && index($0, filter) {
            sum += $NF
        }
        END { printf "%.6f\n", sum }'
}
# delta NAME [FILTER]: the metric's growth over the window (files metrics0 and metrics1 of $dir).
delta() {
    awk -v a="$(metric_sum "$@" <"$dir/metrics0")" -v b="$(metric_sum "$@" <"$dir/metrics1")" \
        'BEGIN { printf "%.6f\n", b - a }'
}

# passed_on AGENT: samples the agent passed on in the window (after relabelling), from its own
# metrics; includes its per-scrape synthetic series (up, scrape_duration_seconds, ...) where it
# sends them.
passed_on() {
    case $1 in
    promrelay)
        if [[ $setup == none ]]; then
            delta promrelay_scraped_samples_total 'job="node"'
        else
            delta promrelay_filter_series_out_total 'filter="relabel"'
        fi
        ;;
    vmagent) delta vmagent_remotewrite_block_size_rows_sum ;;
    prometheus) delta prometheus_remote_storage_samples_total ;;
    esac
}

start_agent() {
    local agent=$1 setup=$2 dir="$work/$1-$2"
    mkdir -p "$dir"
    case $agent in
    promrelay)
        monitor_port="$(free_port)"
        promrelay_config "$setup" >"$dir/promrelay.yaml"
        RUST_LOG=warn "$PROMRELAY_BIN" poller --config "$dir/promrelay.yaml" >"$dir/log" 2>&1 &
        agent_pid=$!
        agent_port=$monitor_port
        ;;
    vmagent)
        agent_port="$(free_port)"
        peer_config "$setup" >"$dir/scrape.yaml"
        /usr/bin/vmagent -promscrape.config="$dir/scrape.yaml" \
            -remoteWrite.url="http://127.0.0.1:$nginx_port/api/v1/write" \
            -remoteWrite.tmpDataPath="$dir/data" -httpListenAddr="127.0.0.1:$agent_port" \
            -loggerLevel=WARN >"$dir/log" 2>&1 &
        agent_pid=$!
        ;;
    prometheus)
        agent_port="$(free_port)"
        {
            peer_config "$setup"
            echo "remote_write:"
            echo "  - url: http://127.0.0.1:$nginx_port/api/v1/write"
        } >"$dir/prometheus.yml"
        /usr/bin/prometheus --enable-feature=agent --config.file="$dir/prometheus.yml" \
            --storage.agent.path="$dir/data" --web.listen-address="127.0.0.1:$agent_port" \
            --log.level=warn >"$dir/log" 2>&1 &
        agent_pid=$!
        ;;
    esac
    pids+=($agent_pid)
}

stop_agent() {
    kill "$agent_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$agent_pid" 2>/dev/null || true
    wait "$agent_pid" 2>/dev/null || true
}

results="$work/results.tsv"
: >"$results"
bench_start="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_start="$(loadavg)"

run() {
    local agent=$1 setup=$2 dir="$work/$1-$2"
    echo "== $agent, relabel: $setup ==" >&2
    local served0
    served0="$(stats | stat_of scrapes)"
    start_agent "$agent" "$setup"
    # Ready once every target has been scraped once (promrelay compiles its filter first).
    local deadline=$((SECONDS + 90))
    until (($(stats | stat_of scrapes) - served0 >= targets)); do
        if ! kill -0 "$agent_pid" 2>/dev/null || ((SECONDS > deadline)); then
            echo "bench-peers: $agent did not scrape every target; its log:" >&2
            tail -n 20 "$dir/log" >&2
            exit 1
        fi
        sleep 0.2
    done
    sleep "$warmup"
    local sinks
    if [[ $agent == promrelay ]]; then sinks="$nats_pid"; else sinks="$(nginx_pids)"; fi
    local load0 t0 cpu0 sink0 scrapes0 samples0 bytes0
    load0="$(loadavg)" t0="$(now)" cpu0="$(cpu_ticks "$agent_pid")" sink0="$(cpu_ticks $sinks)"
    local snapshot
    snapshot="$(stats)"
    scrapes0="$(stat_of scrapes <<<"$snapshot")" samples0="$(stat_of samples <<<"$snapshot")"
    bytes0="$(stat_of bytes <<<"$snapshot")"
    agent_metrics >"$dir/metrics0"
    : >"$dir/rss"
    local end
    end="$(echo "$t0 + $window" | bc)"
    local pause
    while pause="$(awk -v end="$end" -v now="$(now)" 'BEGIN { left = end - now; if (left > 0) print (left < 1 ? left : 1) }')" \
        && [[ -n $pause ]]; do
        sleep "$pause"
        rss_kib "$agent_pid" >>"$dir/rss"
    done
    local t1 cpu1 sink1 scrapes1 samples1 bytes1 load1
    t1="$(now)" cpu1="$(cpu_ticks "$agent_pid")" sink1="$(cpu_ticks $sinks)"
    snapshot="$(stats)"
    scrapes1="$(stat_of scrapes <<<"$snapshot")" samples1="$(stat_of samples <<<"$snapshot")"
    bytes1="$(stat_of bytes <<<"$snapshot")"
    agent_metrics >"$dir/metrics1"
    load1="$(loadavg)"
    local out errors=- calls=- published=-
    out="$(passed_on "$agent")"
    if [[ $agent == promrelay ]]; then
        errors="$(metric_sum promrelay_filter_errors_total <"$dir/metrics1")"
        calls="$(delta promrelay_filter_calls_total)"
        published="$(delta promrelay_publishes_total 'outcome="ok"')"
        local call_seconds self_samples
        call_seconds="$(delta promrelay_filter_call_duration_seconds_sum)"
        self_samples="$(delta promrelay_scraped_samples_total 'job="promrelay"')"
        grep -E '^promrelay_(filter_errors|scrapes|publishes)_total' "$dir/metrics1" >"$dir/promrelay-metrics" || true
        awk -v calls="$calls" -v seconds="$call_seconds" -v self="$self_samples" 'BEGIN {
            printf "  in the window: %d filter calls", calls
            if (calls > 0) printf " (mean %.1f ms of wall clock each)", 1000 * seconds / calls
            printf "; promrelay'"'"'s own job (monitor_port) scraped %d samples, not counted above\n", self
        }' >"$dir/promrelay-window"
    fi
    stop_agent
    local rss_mean rss_max
    rss_mean="$(awk '{sum += $1} END {printf "%.0f", sum / NR}' "$dir/rss")"
    rss_max="$(sort -n "$dir/rss" | tail -n1)"
    local elapsed
    elapsed="$(echo "$t1 - $t0" | bc)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$setup" "$agent" \
        "$((scrapes1 - scrapes0))" "$((samples1 - samples0))" \
        "$(echo "scale=3; ($cpu1 - $cpu0) / $ticks" | bc)" "$rss_mean" "$rss_max" \
        "${out%.*}" "$(echo "scale=3; ($sink1 - $sink0) / $ticks" | bc)" \
        "${errors%.*}" "${calls%.*}" "${published%.*}" "$elapsed" "$load0" "$load1" "$((bytes1 - bytes0))" >>"$results"
    tail -n1 "$results" | awk -F'\t' -v ticks="$ticks" '{
        printf "  window %.1f s: %d scrapes (%.0f KB each as sent), %d samples served, %d passed on; CPU %.2f s (%.1f%% of a core), %.2f µs per sample\n",
            $13, $3, $16 / $3 / 1000, $4, $8, $5, 100 * $5 / $13, 1e6 * $5 / $4
        printf "  RSS mean %.1f MiB, max %.1f MiB; sink CPU %.2f s; load average %s -> %s\n",
            $6 / 1024, $7 / 1024, $9, $14, $15
        if ($2 == "promrelay") printf "  filter errors %s (since start), published in the window %s\n", $10, $12
    }' >&2
    [[ ! -s $dir/promrelay-window ]] || cat "$dir/promrelay-window" >&2
    if [[ $agent == promrelay ]] && ((${published%.*} == 0)); then
        echo "bench-peers: promrelay published nothing in the window: its CPU is not comparable" >&2
    fi
    if [[ $agent == promrelay && -s $dir/promrelay-metrics ]]; then sed 's/^/    /' "$dir/promrelay-metrics" >&2; fi
    if [[ -s $dir/log ]]; then
        echo "  log ($(wc -l <"$dir/log") lines, last 3):" >&2
        tail -n 3 "$dir/log" | cut -c1-200 | sed 's/^/    /' >&2
    fi
}

for setup in $setups; do
    for agent in $agents; do
        run "$agent" "$setup"
    done
done

build="$("${PROMRELAY_BIN:-false}" --version 2>/dev/null | head -n1 || echo "(not run)")"
commit="$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
vmagent_version="$(dpkg-query -W -f '${Version}' victoria-metrics 2>/dev/null || echo unknown)"
prometheus_version="$(dpkg-query -W -f '${Version}' prometheus 2>/dev/null || echo unknown)"
{
    echo "$bench_start; $(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)); load average at start $load_start, at end $(loadavg)"
    echo "$build (commit $commit, ${PROMRELAY_BIN:-not run}); vmagent $vmagent_version; prometheus $prometheus_version (agent mode)"
    echo "$targets targets x $series series every ${interval}s, bodies $encoding; warm-up ${warmup}s after the first round of scrapes, window ${window}s per run"
    echo "command: ${ENCODING:+ENCODING=$encoding }scripts/bench-peers.sh $targets $series ${interval}s $window"
    echo
    echo "| relabel | agent | scrapes | samples | CPU s | µs CPU / sample | CPU ÷ vmagent | CPU ÷ Prometheus | RSS MiB (mean / max) | RSS B / series | RSS ÷ vmagent | RSS ÷ Prometheus | samples passed on | filter errors | load average (window) |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    awk -F'\t' -v series_total="$((targets * series))" '
        { setup[NR] = $1; agent[NR] = $2; line[NR] = $0
          cpu_per[NR] = 1e6 * $5 / $4; rss_per[NR] = 1024 * $6 / series_total
          if ($2 == "vmagent") { vm_cpu[$1] = cpu_per[NR]; vm_rss[$1] = rss_per[NR]; vm[$1] = 1 }
          if ($2 == "prometheus") { pr_cpu[$1] = cpu_per[NR]; pr_rss[$1] = rss_per[NR]; pr[$1] = 1 } }
        # Reading vm_cpu[s] creates it: whether a peer ran is kept in vm[] and pr[].
        function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "-" }
        END {
          for (i = 1; i <= NR; i++) {
            split(line[i], f, "\t")
            printf "| %s | %s | %d | %d | %.2f | %.2f | %s | %s | %.1f / %.1f | %.0f | %s | %s | %d | %s | %s, %s |\n",
              f[1] == "none" ? "none" : "10 rules", f[2], f[3], f[4], f[5], cpu_per[i],
              ratio(cpu_per[i], vm_cpu[f[1]]), ratio(cpu_per[i], pr_cpu[f[1]]),
              f[6] / 1024, f[7] / 1024, rss_per[i], ratio(rss_per[i], vm_rss[f[1]]),
              ratio(rss_per[i], pr_rss[f[1]]), f[8], f[10], f[14], f[15]
          }
          print ""
          for (i = 1; i <= NR; i++) {
            if (agent[i] != "promrelay") continue
            s = setup[i]
            if (s == "none") {
              if (s in vm) printf "- no rules: CPU per sample %s× vmagent (target ≤ 0.35): %s\n", ratio(cpu_per[i], vm_cpu[s]), cpu_per[i] <= 0.35 * vm_cpu[s] ? "met" : "not met"
              if (s in vm) printf "- no rules: RSS per series %s× vmagent (target ≤ 0.4): %s\n", ratio(rss_per[i], vm_rss[s]), rss_per[i] <= 0.4 * vm_rss[s] ? "met" : "not met"
            } else {
              if (s in vm) printf "- 10 rules: CPU per sample %s× vmagent (target ≤ 0.5): %s\n", ratio(cpu_per[i], vm_cpu[s]), cpu_per[i] <= 0.5 * vm_cpu[s] ? "met" : "not met"
              if (s in pr) printf "- 10 rules: CPU per sample %s× the Prometheus agent (target ≤ 1): %s\n", ratio(cpu_per[i], pr_cpu[s]), cpu_per[i] <= pr_cpu[s] ? "met" : "not met"
              split(line[i], f, "\t")
              printf "- 10 rules, shipped filter defaults: %s filter errors since start (target 0): %s\n", f[10], f[10] == 0 ? "met" : "not met"
            }
          }
        }' "$results"
} | tee "${OUT:-/dev/null}"
