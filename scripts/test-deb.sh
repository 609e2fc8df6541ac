#!/usr/bin/env bash
# The Debian package, end to end, on this machine (as root, systemd not needed):
#
# 1. builds the .deb with cargo-deb from the debug binary scripts/test.sh already built (a release
#    build takes 10-20 minutes here; real packages come from `cargo deb -p promrelay`);
# 2. installs it with `dpkg -i`;
# 3. checks what is installed: files and modes, the promrelay user, the conffiles, the unit, the
#    filter SDK's sources (`promrelay filter new` makes crates that depend on them);
# 4. runs `promrelay check-config` on the shipped sample, as root and as the promrelay user, and
#    installs the package again over a changed config (an upgrade keeps it);
# 5. runs the installed binary as the promrelay user with the sample config pointed at real
#    nats-server, Pushgateway and node_exporter on free loopback ports, logging to
#    /var/log/promrelay/, until node_exporter's series arrive; reloads it (SIGHUP), rotates its
#    log with the package's logrotate file (when logrotate is installed) and stops it (SIGTERM);
#    then runs three end-to-end tests with PROMRELAY_BIN=/usr/bin/promrelay (one builds a crate
#    from `promrelay filter new` against the installed SDK);
# 6. removes (`dpkg -r`) and purges (`dpkg -P`) it and checks what is left.
#
# Leaves the machine as it found it: the package purged, and the promrelay user (which the
# package keeps on purge, as Debian does) deleted again if this script created it.
#
# Without root or cargo-deb it prints "SKIPPED: ..." and exits 0, unless PROMRELAY_REQUIRE_DEB=1
# (CI), where that is a failure.
# Environment: PROMRELAY_BIN=path  the binary to package (default: the debug build, built if missing)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

NATS_SERVER=/usr/sbin/nats-server
PUSHGATEWAY=/usr/bin/prometheus-pushgateway
NODE_EXPORTER=/usr/bin/prometheus-node-exporter
CONFIG=/etc/promrelay/promrelay.yaml
# The sample pointed at this test's servers; not a conffile, removed before `dpkg -r`.
TEST_CONFIG=/etc/promrelay/test-deb.yaml
LOGFILE=/var/log/promrelay/promrelay.log

started_at=$SECONDS
say() { printf '==> [%3ds] %s\n' "$((SECONDS - started_at))" "$*"; }
fail() {
    printf 'test-deb.sh: FAILED: %s\n' "$*" >&2
    exit 1
}
skip() {
    if [[ "${PROMRELAY_REQUIRE_DEB:-0}" == 1 ]]; then
        fail "$* (PROMRELAY_REQUIRE_DEB=1)"
    fi
    echo "SKIPPED: $*"
    exit 0
}

[[ $EUID -eq 0 ]] || skip "the Debian package test needs root (dpkg -i)"
cargo deb --version >/dev/null 2>&1 || skip "cargo-deb is not installed (cargo install cargo-deb --locked)"
for tool in dpkg dpkg-query setpriv "$NATS_SERVER" "$PUSHGATEWAY" "$NODE_EXPORTER"; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is missing"
done
# Prints dpkg's state of the promrelay package: empty or "... not-installed" when absent.
package_status() { dpkg-query -W -f='${Status}' promrelay 2>/dev/null || true; }
package_absent() {
    local status
    status=$(package_status)
    [[ -z "$status" || "$status" == *not-installed ]]
}
package_absent || skip "a promrelay package is here ($(package_status)); this test would replace and purge it"

# --- what we started or installed, undone on any exit -----------------------------------------
pids=()
names=()
installed=0
user_existed=0
getent passwd promrelay >/dev/null && user_existed=1
workdir=$(mktemp -d /tmp/promrelay-test-deb.XXXXXX)

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local index
    for ((index = ${#pids[@]} - 1; index >= 0; index--)); do
        kill -TERM "${pids[index]}" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "${pids[index]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${pids[index]}" 2>/dev/null || true
        wait "${pids[index]}" 2>/dev/null || true
    done
    if ((status != 0)); then
        for log in "$workdir"/*.log "$LOGFILE"; do
            [[ -s "$log" ]] || continue
            echo "--- last lines of $log ---" >&2
            tail -n 20 "$log" >&2 || true
        done
    fi
    rm -f "$TEST_CONFIG"
    if ((installed)); then
        dpkg -P promrelay >/dev/null 2>&1 || echo "test-deb.sh: could not purge promrelay" >&2
    fi
    if ((!user_existed)) && getent passwd promrelay >/dev/null; then
        deluser --system --quiet promrelay >/dev/null 2>&1 || userdel promrelay || true
        getent group promrelay >/dev/null && { delgroup --system --quiet promrelay >/dev/null 2>&1 || groupdel promrelay || true; }
    fi
    rm -rf "$workdir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts "$@" in the background, output in $workdir/<name>.log, and remembers its PID.
start() {
    local name=$1
    shift
    "$@" >"$workdir/$name.log" 2>&1 &
    pids+=($!)
    names+=("$name")
}

check_alive() {
    local index
    for index in "${!pids[@]}"; do
        kill -0 "${pids[index]}" 2>/dev/null || fail "${names[index]} exited unexpectedly"
    done
}

# HTTP GET with bash alone: prints the body, fails unless 2xx.
http_get() {
    local port=$1 path=$2 answer status
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$path" "$port" >&3
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

wait_http() {
    local what=$1 port=$2 path=$3
    for _ in $(seq 1 300); do
        http_get "$port" "$path" >/dev/null 2>&1 && return 0
        check_alive
        sleep 0.1
    done
    fail "$what did not answer on 127.0.0.1:$port$path"
}

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

# "mode owner:group" of a path, e.g. "750 root:promrelay".
perms() { stat -c '%a %U:%G' "$1"; }
expect_perms() {
    local path=$1 expected=$2 actual
    [[ -e "$path" ]] || fail "$path is not installed"
    actual=$(perms "$path")
    [[ "$actual" == "$expected" ]] || fail "$path is $actual, expected $expected"
}
# Runs "$@" as the promrelay user and group, like the unit's User=/Group=.
as_promrelay() { setpriv --reuid=promrelay --regid=promrelay --init-groups "$@"; }

# --- 1. build the package -----------------------------------------------------------------------
binary="${PROMRELAY_BIN:-}"
if [[ -z "$binary" ]]; then
    target_dir="${CARGO_TARGET_DIR:-target}"
    [[ "$target_dir" = /* ]] || target_dir="$PWD/$target_dir"
    binary="$target_dir/debug/promrelay"
    if [[ ! -x "$binary" ]]; then
        say "cargo build -p promrelay --bin promrelay"
        cargo build -p promrelay --bin promrelay
    fi
fi
[[ -x "$binary" ]] || fail "no promrelay binary at $binary"

# cargo-deb packages target/<profile>/promrelay and refuses the dev profile: give it the debug
# binary as the profile "ci" in a target dir of its own, and do not let it build (--no-build).
# Stripped, without the dbgsym package a release build makes, light compression: seconds.
say "cargo deb -p promrelay (the debug binary $binary, as profile ci)"
mkdir -p "$workdir/target/ci"
cp "$binary" "$workdir/target/ci/promrelay"
CARGO_TARGET_DIR="$workdir/target" cargo deb -p promrelay --profile ci --no-build --fast \
    --strip --no-dbgsym --output "$workdir/" >"$workdir/cargo-deb.log" 2>&1 || {
    cat "$workdir/cargo-deb.log" >&2
    fail "cargo deb failed"
}
debs=("$workdir"/promrelay_*.deb)
deb=${debs[0]}
[[ -f "$deb" ]] || fail "cargo deb wrote no .deb into $workdir"
say "built $(basename "$deb") ($(du -h "$deb" | cut -f1))"
rm -rf "$workdir/target"

# --- 2. install ---------------------------------------------------------------------------------
say "dpkg -i $(basename "$deb")"
installed=1
dpkg -i "$deb"

# --- 3. what is installed -----------------------------------------------------------------------
say "checking the installed files, modes, user and conffiles"
expect_perms /usr/bin/promrelay "755 root:root"
expect_perms /usr/lib/systemd/system/promrelay.service "644 root:root"
expect_perms /etc/promrelay "750 root:promrelay"
expect_perms "$CONFIG" "640 root:promrelay"
expect_perms /etc/logrotate.d/promrelay "644 root:root"
expect_perms /var/lib/promrelay "750 promrelay:promrelay"
expect_perms /var/log/promrelay "750 promrelay:promrelay"
expect_perms /usr/share/doc/promrelay/config.md "644 root:root"
sdk=/usr/share/promrelay/guest-sdk
for file in Cargo.toml ABI.md src/lib.rs examples/pass.wat abi/Cargo.toml abi/src/lib.rs; do
    expect_perms "$sdk/$file" "644 root:root"
done
# The dashboard and the alert rules (docs/monitoring.md), as in the repository.
expect_perms /usr/share/promrelay/grafana/promrelay.json "644 root:root"
expect_perms /usr/share/promrelay/alerts.yaml "644 root:root"
cmp -s /usr/share/promrelay/alerts.yaml packaging/alerts.yaml || fail "alerts.yaml differs from packaging/"
cmp -s /usr/share/promrelay/grafana/promrelay.json packaging/grafana/promrelay.json ||
    fail "the dashboard differs from packaging/grafana/"
if command -v promtool >/dev/null; then
    promtool check rules /usr/share/promrelay/alerts.yaml >/dev/null ||
        fail "promtool check rules refuses the installed alerts.yaml"
fi

account=$(getent passwd promrelay) || fail "no promrelay user"
IFS=: read -r _ _ uid _ _ home shell <<<"$account"
((uid < 1000)) || fail "promrelay is not a system user (uid $uid)"
[[ "$home" == /var/lib/promrelay ]] || fail "promrelay's home is $home"
[[ "$shell" == */nologin ]] || fail "promrelay's shell is $shell"
getent group promrelay >/dev/null || fail "no promrelay group"

conffiles=$(dpkg-query -W -f='${Conffiles}' promrelay)
grep -q "^ $CONFIG " <<<"$conffiles" || fail "$CONFIG is not a conffile: $conffiles"
grep -q "^ /etc/logrotate.d/promrelay " <<<"$conffiles" || fail "the logrotate file is not a conffile"
depends=$(dpkg-query -W -f='${Depends}' promrelay)
[[ "$depends" =~ ^(adduser,\ libc6[^,]*|libc6[^,]*,\ adduser)$ ]] || fail "Depends is '$depends', expected only libc6 and adduser"

unit=/usr/lib/systemd/system/promrelay.service
for line in 'User=promrelay' 'ProtectSystem=strict' 'NoNewPrivileges=yes' \
    'ExecReload=/bin/kill -HUP $MAINPID' \
    "ExecStart=/usr/bin/promrelay run --config $CONFIG"; do
    grep -qxF "$line" "$unit" || fail "$unit lacks '$line'"
done
if command -v systemd-analyze >/dev/null 2>&1; then
    systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
fi
# Enabled the Debian way (recorded by deb-systemd-helper, works without systemd running).
[[ -L /etc/systemd/system/multi-user.target.wants/promrelay.service ]] || fail "the unit is not enabled"
/usr/bin/promrelay --version

say "promrelay filter new: the crate depends on the SDK the package installed"
(cd "$workdir" && /usr/bin/promrelay filter new deb-check >/dev/null)
grep -qxF "promrelay-sdk = { path = \"$sdk\" }" "$workdir/deb-check/Cargo.toml" ||
    fail "filter new did not default to $sdk: $(grep promrelay-sdk "$workdir/deb-check/Cargo.toml")"
rm -rf "$workdir/deb-check"

# --- 4. check-config on the shipped sample ------------------------------------------------------
say "promrelay check-config on the shipped sample (root, then the promrelay user)"
/usr/bin/promrelay check-config --config "$CONFIG"
(cd /var/lib/promrelay && as_promrelay /usr/bin/promrelay check-config --config "$CONFIG")
# Only root and the promrelay group can read it (it may hold NATS passwords).
if setpriv --reuid=nobody --regid=nogroup --clear-groups cat "$CONFIG" >/dev/null 2>&1; then
    fail "$CONFIG is readable by other users"
fi
if command -v logrotate >/dev/null 2>&1; then
    logrotate --debug /etc/logrotate.d/promrelay >"$workdir/logrotate.log" 2>&1 ||
        fail "logrotate rejects /etc/logrotate.d/promrelay: $(cat "$workdir/logrotate.log")"
fi

say "dpkg -i again (an upgrade): an admin's change to the conffile and its modes are kept"
echo '# changed by test-deb.sh' >>"$CONFIG"
dpkg -i "$deb"
grep -qx '# changed by test-deb.sh' "$CONFIG" || fail "reinstalling replaced the changed $CONFIG"
expect_perms "$CONFIG" "640 root:promrelay"
expect_perms /var/lib/promrelay "750 promrelay:promrelay"

# --- 5. run the installed binary as the promrelay user ------------------------------------------
nats_port=$(free_port)
nats_monitor_port=$(free_port)
pushgateway_port=$(free_port)
node_exporter_port=$(free_port)
monitor_port=$(free_port)
say "starting nats-server, Pushgateway, node_exporter on free loopback ports"
start nats-server "$NATS_SERVER" -js -sd "$workdir/jetstream" -a 127.0.0.1 \
    -p "$nats_port" -m "$nats_monitor_port"
start pushgateway "$PUSHGATEWAY" "--web.listen-address=127.0.0.1:$pushgateway_port" \
    "--persistence.file=$workdir/pushgateway.db"
start node-exporter "$NODE_EXPORTER" "--web.listen-address=127.0.0.1:$node_exporter_port"
wait_http nats-server "$nats_monitor_port" /healthz
wait_http "the Pushgateway" "$pushgateway_port" /-/ready
wait_http node_exporter "$node_exporter_port" /metrics

# The shipped sample, unchanged but for the ports, a short interval, an identity and the logfile.
sed -e "s|127\.0\.0\.1:4222|127.0.0.1:$nats_port|g" \
    -e "s|127\.0\.0\.1:9100|127.0.0.1:$node_exporter_port|g" \
    -e "s|127\.0\.0\.1:9091|127.0.0.1:$pushgateway_port|g" \
    -e "s|^monitor_port: 10000$|monitor_port: $monitor_port|" \
    -e "s|^scrape_interval: 60s$|scrape_interval: 2s|" \
    -e "s|^scrape_timeout: 10s$|scrape_timeout: 2s|" \
    -e "s|^# identity: dc1$|identity: test-deb|" \
    -e "s|^# logfile: $LOGFILE$|logfile: $LOGFILE|" \
    "$CONFIG" >"$TEST_CONFIG"
for expected in "127.0.0.1:$nats_port" "127.0.0.1:$node_exporter_port" "127.0.0.1:$pushgateway_port" \
    "monitor_port: $monitor_port" 'scrape_interval: 2s' 'identity: test-deb' "logfile: $LOGFILE"; do
    grep -qF "$expected" "$TEST_CONFIG" || fail "the sample changed: could not set '$expected' in it"
done
chown root:promrelay "$TEST_CONFIG"
chmod 0640 "$TEST_CONFIG"
(cd /var/lib/promrelay && as_promrelay /usr/bin/promrelay check-config --config "$TEST_CONFIG")

say "promrelay run as the promrelay user, logging to $LOGFILE"
# As the unit runs it: UMask=0027, working directory /var/lib/promrelay.
saved_umask=$(umask)
umask 0027
cd /var/lib/promrelay
start promrelay setpriv --reuid=promrelay --regid=promrelay --init-groups --no-new-privs \
    /usr/bin/promrelay run --config "$TEST_CONFIG"
cd - >/dev/null
umask "$saved_umask"
relay_pid=${pids[-1]}

# node_exporter's series pushed by the receiver, labelled with the sample's job and publisher.
count_series() {
    local text
    text=$(http_get "$pushgateway_port" /metrics 2>/dev/null) || {
        echo 0
        return 0
    }
    grep -v '^#' <<<"$text" | grep -E '[{,]job="node"' | grep -F 'publisher="test-deb"' |
        grep -cvE '^(push_time_seconds|push_failure_time_seconds)\{' || true
}
arrived=0
for _ in $(seq 1 240); do
    arrived=$(count_series)
    ((arrived > 0)) && break
    check_alive
    sleep 0.5
done
((arrived > 0)) || fail "no node_exporter series arrived in the Pushgateway within 120 s"
say "$arrived node_exporter series arrived through the installed promrelay"

expect_perms "$LOGFILE" "640 promrelay:promrelay"
grep -q 'promrelay' "$LOGFILE" || fail "$LOGFILE has no log lines"

say "SIGHUP (systemctl reload): the config is re-read"
kill -HUP "$relay_pid"
for _ in $(seq 1 100); do
    grep -q 'reloaded:' "$LOGFILE" && break
    check_alive
    sleep 0.1
done
grep -q 'reloaded:' "$LOGFILE" || fail "no 'reloaded:' line in $LOGFILE after SIGHUP"

if command -v logrotate >/dev/null 2>&1; then
    say "logrotate -f: copytruncate keeps the daemon writing to $LOGFILE"
    logrotate --force --state "$workdir/logrotate.state" /etc/logrotate.d/promrelay
    [[ -s "$LOGFILE.1" ]] || fail "logrotate did not rotate $LOGFILE"
    kill -HUP "$relay_pid"
    for _ in $(seq 1 100); do
        grep -q 'reloaded:' "$LOGFILE" && break
        sleep 0.1
    done
    grep -q 'reloaded:' "$LOGFILE" || fail "nothing logged to $LOGFILE after rotation"
fi

say "SIGTERM (systemctl stop): exits 0"
kill -TERM "$relay_pid"
relay_status=0
wait "$relay_pid" || relay_status=$?
unset 'pids[-1]' 'names[-1]'
((relay_status == 0)) || fail "promrelay exited $relay_status after SIGTERM"
grep -q 'promrelay stopped' "$LOGFILE" || fail "no 'promrelay stopped' line in $LOGFILE"

say "end-to-end tests with PROMRELAY_BIN=/usr/bin/promrelay"
e2e_tests=(
    pipeline::every_node_exporter_series_arrives_with_job_instance_and_publisher_labels_and_equal_values
    pipeline::sigterm_exits_0_after_publishing_what_was_scraped
    filters::filter_new_writes_a_crate_that_builds_and_passes_its_own_test
)
if cargo nextest --version >/dev/null 2>&1; then
    filter=""
    for name in "${e2e_tests[@]}"; do
        filter+="${filter:+ | }test(=$name)"
    done
    # --workspace, as scripts/test.sh runs it: the same features, so nothing is rebuilt.
    PROMRELAY_BIN=/usr/bin/promrelay cargo nextest run --workspace -E "binary(e2e) & ($filter)"
else
    PROMRELAY_BIN=/usr/bin/promrelay cargo test --workspace --test e2e -- --exact "${e2e_tests[@]}"
fi

# --- 6. remove and purge ------------------------------------------------------------------------
rm -f "$TEST_CONFIG"
say "dpkg -r promrelay"
dpkg -r promrelay
[[ ! -e /usr/bin/promrelay ]] || fail "/usr/bin/promrelay is still there after dpkg -r"
[[ ! -e "$unit" ]] || fail "$unit is still there after dpkg -r"
[[ ! -e /usr/share/promrelay ]] || fail "/usr/share/promrelay is still there after dpkg -r"
[[ -f "$CONFIG" ]] || fail "dpkg -r removed the conffile $CONFIG (only purge should)"
say "dpkg -P promrelay"
dpkg -P promrelay
installed=0
for path in /etc/promrelay /etc/logrotate.d/promrelay /var/lib/promrelay /var/log/promrelay \
    /etc/systemd/system/multi-user.target.wants/promrelay.service \
    /etc/systemd/system/promrelay.service; do
    [[ ! -e "$path" && ! -L "$path" ]] || fail "$path is still there after dpkg -P"
done
package_absent || fail "dpkg still lists promrelay after dpkg -P: $(package_status)"

say "the Debian package works: built, installed, checked, run as promrelay, removed and purged"
