//! Bench harness for `scripts/bench-peers.sh`: N node_exporter-shaped scrape targets on loopback,
//! one port each (so every agent gives each target its own `instance`, as it would to N hosts),
//! serving `GET /metrics` with exactly S samples whose values change on every scrape, over
//! HTTP/1.1 keep-alive (Prometheus and vmagent keep their scrape connections open), gzipped for
//! a client that sends `Accept-Encoding: gzip` (as node_exporter does; all three agents ask).
//! `GET /stats` on any of the ports answers, for all targets together, `scrapes N`, `samples M`,
//! `bytes B` (bodies as sent) and `targets_scraped K` (targets scraped at least once), as plain
//! `key value` lines: the bench reads it before and after its window to count what each agent
//! scraped.
//!
//! The series mimic a busy node_exporter on a container host: a few small fixed families
//! (`go_*`, `process_*`, `node_scrape_collector_*`, load and memory) and the rest spread over the
//! large per-CPU, per-interface, per-filesystem and per-disk families, with label values that the
//! bench's ten relabel rules (`filters/relabel/benches/typical_rules.yaml`) act on: a third of the
//! interfaces are `veth`/`docker`/`br-` ones, two mount points in five are under `/run` or `/sys`,
//! filesystems and disks carry `fstype`/`major`/`minor`. Every target serves the same series;
//! only the agent's `instance` label tells them apart. Never run by the tests.
//!
//! Usage: `peer_targets PORT_FILE TARGETS SERIES [gzip|identity]` — binds TARGETS ports on
//! 127.0.0.1 and writes them to PORT_FILE, one a line (written to a temporary name and renamed,
//! so a reader never sees half of it). `identity` never compresses (default `gzip`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One line of the exposition: a `# HELP`/`# TYPE` line (no value) or a sample's name and labels,
/// followed on each scrape by a value of its kind.
struct Line {
    text: String,
    value: Option<Kind>,
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// Builds the S sample lines (plus headers) every target serves.
struct Exposition {
    lines: Vec<Line>,
    samples: usize,
    limit: usize,
}

impl Exposition {
    fn new(limit: usize) -> Self {
        Exposition {
            lines: Vec::new(),
            samples: 0,
            limit,
        }
    }

    fn left(&self) -> usize {
        self.limit - self.samples
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        if self.left() == 0 {
            return;
        }
        self.lines.push(Line {
            text: format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"),
            value: None,
        });
    }

    /// `labels` is the text inside the braces, empty for none.
    fn sample(&mut self, name: &str, labels: &str, kind: Kind) {
        if self.left() == 0 {
            return;
        }
        let text = if labels.is_empty() {
            format!("{name} ")
        } else {
            format!("{name}{{{labels}}} ")
        };
        self.lines.push(Line {
            text,
            value: Some(kind),
        });
        self.samples += 1;
    }
}

const MODES: [&str; 8] = [
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
const INTERFACES: [&str; 6] = ["eth", "veth", "ens", "docker", "bond", "br-"];
const FILESYSTEMS: [&str; 3] = ["ext4", "xfs", "tmpfs"];

/// The fixed small families first, then the large ones sharing what is left by weight.
fn exposition(series: usize) -> Exposition {
    let mut out = Exposition::new(series);
    out.family(
        "go_gc_duration_seconds",
        "summary",
        "A summary of the pause duration of garbage collection cycles.",
    );
    for quantile in ["0", "0.25", "0.5", "0.75", "1"] {
        out.sample(
            "go_gc_duration_seconds",
            &format!("quantile=\"{quantile}\""),
            Kind::Gauge,
        );
    }
    out.sample("go_gc_duration_seconds_sum", "", Kind::Counter);
    out.sample("go_gc_duration_seconds_count", "", Kind::Counter);
    for (name, help) in [
        ("go_goroutines", "Goroutines that exist."),
        ("go_threads", "OS threads created."),
        ("go_memstats_alloc_bytes", "Bytes in use."),
        ("go_memstats_heap_objects", "Allocated objects."),
        ("go_memstats_sys_bytes", "Bytes from the OS."),
        ("process_resident_memory_bytes", "Resident memory."),
        ("process_open_fds", "Open file descriptors."),
        ("node_load1", "1m load average."),
        ("node_load5", "5m load average."),
        ("node_load15", "15m load average."),
        ("node_memory_MemFree_bytes", "MemFree_bytes."),
        ("node_memory_MemTotal_bytes", "MemTotal_bytes."),
    ] {
        out.family(name, "gauge", help);
        out.sample(name, "", Kind::Gauge);
    }
    for (name, help) in [
        (
            "node_scrape_collector_success",
            "node_exporter: Whether a collector succeeded.",
        ),
        (
            "node_scrape_collector_duration_seconds",
            "node_exporter: Duration of a collector scrape.",
        ),
    ] {
        out.family(name, "gauge", help);
        for collector in 0..40 {
            out.sample(name, &format!("collector=\"c{collector}\""), Kind::Gauge);
        }
    }

    type Labels = fn(usize) -> String;
    let large: [(&str, &str, &str, u32, Labels); 8] = [
        (
            "node_cpu_seconds_total",
            "counter",
            "Seconds the CPUs spent in each mode.",
            30,
            |j| {
                format!(
                    "cpu=\"{}\",mode=\"{}\"",
                    j / MODES.len(),
                    MODES[j % MODES.len()]
                )
            },
        ),
        (
            "node_interrupts_total",
            "counter",
            "Interrupt details.",
            18,
            |j| {
                format!(
                    "cpu=\"{}\",devices=\"dev{}\",type=\"{}\"",
                    j % 16,
                    j / 16,
                    j / 16
                )
            },
        ),
        (
            "node_network_receive_bytes_total",
            "counter",
            "Network device statistic receive_bytes.",
            8,
            interface,
        ),
        (
            "node_network_transmit_bytes_total",
            "counter",
            "Network device statistic transmit_bytes.",
            8,
            interface,
        ),
        (
            "node_network_receive_packets_total",
            "counter",
            "Network device statistic receive_packets.",
            8,
            interface,
        ),
        (
            "node_filesystem_avail_bytes",
            "gauge",
            "Filesystem space available to non-root users in bytes.",
            10,
            |j| {
                let mountpoint = match j % 5 {
                    0 => format!("/srv/{j}"),
                    1 => format!("/run/user/{j}"),
                    2 => format!("/home/{j}"),
                    3 => format!("/sys/fs/cgroup/{j}"),
                    _ => format!("/var/lib/{j}"),
                };
                format!(
                    "device=\"/dev/mapper/vg-lv{j}\",fstype=\"{}\",mountpoint=\"{mountpoint}\"",
                    FILESYSTEMS[j % FILESYSTEMS.len()]
                )
            },
        ),
        (
            "node_disk_io_time_seconds_total",
            "counter",
            "Total seconds spent doing I/Os.",
            10,
            |j| format!("device=\"nvme{j}n1\",major=\"259\",minor=\"{j}\""),
        ),
        (
            "node_hwmon_temp_celsius",
            "gauge",
            "Hardware monitor for temperature (input).",
            8,
            |j| {
                format!(
                    "chip=\"platform_coretemp_{}\",sensor=\"temp{}\"",
                    j / 32,
                    j % 32
                )
            },
        ),
    ];
    let rest = out.left();
    let total_weight: u32 = large.iter().map(|family| family.3).sum();
    for (index, (name, kind, help, weight, labels)) in large.iter().enumerate() {
        // The last family takes the rounding remainder, so the total is exactly `series`.
        let count = if index + 1 == large.len() {
            out.left()
        } else {
            rest * *weight as usize / total_weight as usize
        };
        out.family(name, kind, help);
        let value = if *kind == "counter" {
            Kind::Counter
        } else {
            Kind::Gauge
        };
        for j in 0..count {
            out.sample(name, &labels(j), value);
        }
    }
    out
}

fn interface(j: usize) -> String {
    format!(
        "device=\"{}{}\"",
        INTERFACES[j % INTERFACES.len()],
        j / INTERFACES.len()
    )
}

/// The scrape body of a target's `count`-th scrape: counters grow, gauges move.
fn render(lines: &[Line], count: u64, body: &mut String) {
    body.clear();
    for (index, line) in lines.iter().enumerate() {
        body.push_str(&line.text);
        let index = index as u64;
        match line.value {
            None => continue,
            Some(Kind::Counter) => {
                let _ = write!(
                    body,
                    "{}",
                    (index * 1000 + count * (index % 13 + 1)) as f64 * 0.25
                );
            }
            Some(Kind::Gauge) => {
                let _ = write!(
                    body,
                    "{}",
                    ((count * 7919 + index * 104_729) % 100_000) as f64 / 100.0
                );
            }
        }
        body.push('\n');
    }
}

#[derive(Default)]
struct Stats {
    scrapes: AtomicU64,
    samples: AtomicU64,
    bytes: AtomicU64,
    targets_scraped: AtomicU64,
}

struct Shared {
    lines: Vec<Line>,
    samples: u64,
    gzip: bool,
    stats: Stats,
}

/// One keep-alive connection: answers requests until the client closes or asks to.
async fn serve(mut socket: TcpStream, shared: Arc<Shared>, scrapes: Arc<AtomicU64>) {
    let mut buffer = Vec::with_capacity(4096);
    let mut body = String::new();
    let mut compressed = Vec::new();
    let mut response = Vec::new();
    loop {
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if buffer.len() > 64 * 1024 {
                return;
            }
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        buffer.drain(..head_end);
        let mut request_line = head.lines().next().unwrap_or_default().split(' ');
        let path = request_line.nth(1).unwrap_or("/").to_owned();
        let close = head.contains("\r\nconnection: close") || head.contains("http/1.0\r\n");
        let gzip = shared.gzip
            && head
                .lines()
                .any(|line| line.starts_with("accept-encoding:") && line.contains("gzip"));
        let mut encoding = "";
        let (status, content_type) = if path == "/metrics" {
            let count = scrapes.fetch_add(1, Ordering::Relaxed) + 1;
            if count == 1 {
                shared.stats.targets_scraped.fetch_add(1, Ordering::Relaxed);
            }
            shared.stats.scrapes.fetch_add(1, Ordering::Relaxed);
            shared
                .stats
                .samples
                .fetch_add(shared.samples, Ordering::Relaxed);
            render(&shared.lines, count, &mut body);
            if gzip {
                // Level 1: the targets' own CPU is not what is measured, but it shares the cores.
                compressed.clear();
                let mut encoder = flate2::write::GzEncoder::new(
                    std::mem::take(&mut compressed),
                    flate2::Compression::fast(),
                );
                encoder
                    .write_all(body.as_bytes())
                    .expect("gzip into a Vec cannot fail");
                compressed = encoder.finish().expect("gzip into a Vec cannot fail");
                encoding = "Content-Encoding: gzip\r\n";
            }
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8")
        } else if path == "/stats" {
            body.clear();
            let stats = &shared.stats;
            let _ = write!(
                body,
                "scrapes {}\nsamples {}\nbytes {}\ntargets_scraped {}\n",
                stats.scrapes.load(Ordering::Relaxed),
                stats.samples.load(Ordering::Relaxed),
                stats.bytes.load(Ordering::Relaxed),
                stats.targets_scraped.load(Ordering::Relaxed)
            );
            ("200 OK", "text/plain")
        } else {
            body.clear();
            ("404 Not Found", "text/plain")
        };
        let payload = if encoding.is_empty() {
            body.as_bytes()
        } else {
            &compressed
        };
        if path == "/metrics" {
            shared
                .stats
                .bytes
                .fetch_add(payload.len() as u64, Ordering::Relaxed);
        }
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{encoding}Content-Length: {}\r\n{}\r\n",
            payload.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        response.clear();
        response.extend_from_slice(head.as_bytes());
        response.extend_from_slice(payload);
        if socket.write_all(&response).await.is_err() || close {
            return;
        }
    }
}

// One thread: the targets' own work (~1 ms per 5 000-series scrape) stays on at most one core,
// next to the agent being measured.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(port_file), Some(targets), Some(series)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<usize>().ok()),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: peer_targets PORT_FILE TARGETS SERIES [gzip|identity]");
        std::process::exit(2);
    };
    let gzip = match args.get(3).map(String::as_str) {
        None | Some("gzip") => true,
        Some("identity") => false,
        Some(other) => {
            eprintln!("peer_targets: encoding {other:?} is neither gzip nor identity");
            std::process::exit(2);
        }
    };
    let exposition = exposition(series);
    let shared = Arc::new(Shared {
        samples: exposition.samples as u64,
        lines: exposition.lines,
        gzip,
        stats: Stats::default(),
    });
    let mut ports = String::new();
    let mut listeners = Vec::new();
    for _ in 0..targets {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let _ = writeln!(ports, "{}", listener.local_addr()?.port());
        listeners.push(listener);
    }
    let partial = format!("{port_file}.partial");
    std::fs::write(&partial, ports)?;
    std::fs::rename(&partial, port_file)?;
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let shared = Arc::clone(&shared);
        // Scrapes of this target, over all its connections: the value generator's clock.
        let scrapes = Arc::new(AtomicU64::new(0));
        tasks.spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let _ = socket.set_nodelay(true);
                tokio::spawn(serve(socket, Arc::clone(&shared), Arc::clone(&scrapes)));
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
