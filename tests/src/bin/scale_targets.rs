//! Bench harness: one loopback HTTP server serving varied scrapes for N targets, `GET /t/<n>`
//! (20 to 200 series each, depending on n; a counter that counts that target's scrapes), and
//! `GET /stats`: requests served in total and per second of the scrape interval (when, within
//! the interval, the scrapes started), as plain `key value` lines. Never run by the tests:
//! `scripts/bench-scale.sh` and `scripts/soak.sh` run it.
//!
//! Usage: `scale_targets PORT_FILE [INTERVAL_SECONDS]` — binds 127.0.0.1:0 and writes the port to
//! PORT_FILE.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Default)]
struct Stats {
    total: u64,
    per_target: HashMap<u64, u64>,
    /// Scrape starts per second of the interval.
    offsets: Vec<u64>,
}

fn body(target: u64, count: u64) -> String {
    let series = 20 + (target * 37) % 181;
    let mut text = String::with_capacity(series as usize * 70);
    let _ = writeln!(text, "# HELP bench_scrapes_total Scrapes of this target.");
    let _ = writeln!(text, "# TYPE bench_scrapes_total counter");
    let _ = writeln!(text, "bench_scrapes_total {count}");
    let _ = writeln!(
        text,
        "# HELP bench_value A varied gauge.\n# TYPE bench_value gauge"
    );
    for index in 0..series {
        let _ = writeln!(
            text,
            "bench_value{{device=\"d{index}\",kind=\"k{}\"}} {}",
            index % 7,
            (count * 31 + index * 17) % 1000
        );
    }
    text
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(port_file) = args.next() else {
        eprintln!("usage: scale_targets PORT_FILE [INTERVAL_SECONDS]");
        std::process::exit(2);
    };
    let interval: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    std::fs::write(&port_file, listener.local_addr()?.port().to_string())?;
    let stats = Arc::new(Mutex::new(Stats {
        offsets: vec![0; interval as usize],
        ..Stats::default()
    }));
    loop {
        let (mut socket, _) = listener.accept().await?;
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            let mut read = 0;
            while !buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") && read < buffer.len() {
                match socket.read(&mut buffer[read..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => read += n,
                }
            }
            let request = String::from_utf8_lossy(&buffer[..read]);
            let path = request.split(' ').nth(1).unwrap_or("/").to_string();
            let text = if path == "/stats" {
                let stats = stats.lock().expect("not poisoned");
                let mut text = format!(
                    "total {}\ntargets {}\n",
                    stats.total,
                    stats.per_target.len()
                );
                for (second, count) in stats.offsets.iter().enumerate() {
                    let _ = writeln!(text, "offset_{second} {count}");
                }
                text
            } else if let Some(target) = path.strip_prefix("/t/").and_then(|n| n.parse().ok()) {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_secs())
                    .unwrap_or_default();
                let count = {
                    let mut stats = stats.lock().expect("not poisoned");
                    stats.total += 1;
                    let slot = (now % interval) as usize;
                    stats.offsets[slot] += 1;
                    let entry = stats.per_target.entry(target).or_default();
                    *entry += 1;
                    *entry
                };
                body(target, count)
            } else {
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                return;
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                text.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(text.as_bytes()).await;
        });
    }
}
