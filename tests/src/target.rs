//! An in-process scrape target whose `/metrics` misbehaves on demand: garbage, a huge body, a body
//! that never ends, a slow answer, gzip, an error status. It counts the requests it receives.
//!
//! It runs on its own thread with its own tokio runtime, so it serves the same whether the test is
//! synchronous, a current-thread `#[tokio::test]` blocked in `poll_until`, or multi-threaded.
//! Every connection gets one answer and `Connection: close`.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// What `GET /metrics` does.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// 200 with this body as `text/plain; version=0.0.4`.
    Fixed(String),
    /// 200 with text that is not Prometheus exposition.
    Garbage,
    /// 200 with a `Content-Length` of `bytes` and that many bytes of valid-looking text, sent as
    /// fast as the client reads.
    Huge { bytes: u64 },
    /// 200 without a length, then a sample line every 20 ms, forever.
    Endless,
    /// Waits `delay` before answering 200 with `body`.
    Slow { delay: Duration, body: String },
    /// 200 with `body` gzip-compressed and `Content-Encoding: gzip`.
    Gzip(String),
    /// This status code with a short text body.
    Status(u16),
    /// 200 with `body` when the request's `Authorization` header is exactly `authorization`,
    /// else 401.
    RequireAuthorization { authorization: String, body: String },
}

impl Behaviour {
    /// A 100 MiB body.
    pub fn huge_100_mib() -> Behaviour {
        Behaviour::Huge {
            bytes: 100 * 1024 * 1024,
        }
    }
}

/// A small valid exposition: two families, three samples.
pub const SMALL_BODY: &str = "# HELP demo_requests_total Requests served.\n\
# TYPE demo_requests_total counter\n\
demo_requests_total{code=\"200\"} 42\n\
demo_requests_total{code=\"500\"} 3\n\
# HELP demo_temperature_celsius A gauge.\n\
# TYPE demo_temperature_celsius gauge\n\
demo_temperature_celsius 21.5\n";

/// The running target; stops on drop.
#[derive(Debug)]
pub struct TargetServer {
    port: u16,
    behaviour: Arc<Mutex<Behaviour>>,
    requests: Arc<AtomicU64>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TargetServer {
    /// Starts serving `behaviour` on a free loopback port; returns once it accepts connections.
    pub fn start(behaviour: Behaviour) -> TargetServer {
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the target server");
        std_listener
            .set_nonblocking(true)
            .expect("make the target listener non-blocking");
        let port = std_listener
            .local_addr()
            .expect("target listener address")
            .port();
        let behaviour = Arc::new(Mutex::new(behaviour));
        let requests = Arc::new(AtomicU64::new(0));
        let (shutdown, shutdown_received) = oneshot::channel();
        let thread = {
            let behaviour = Arc::clone(&behaviour);
            let requests = Arc::clone(&requests);
            std::thread::Builder::new()
                .name(format!("target-{port}"))
                .spawn(move || serve(std_listener, behaviour, requests, shutdown_received))
                .expect("start the target server thread")
        };
        TargetServer {
            port,
            behaviour,
            requests,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/metrics`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Changes what the next requests get.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = behaviour;
    }

    /// Requests received so far (counted when the request head has been read).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TargetServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    std_listener: std::net::TcpListener,
    behaviour: Arc<Mutex<Behaviour>>,
    requests: Arc<AtomicU64>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the target server's runtime");
    runtime.block_on(async move {
        let listener = TcpListener::from_std(std_listener).expect("register the target listener");
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let behaviour = Arc::clone(&behaviour);
                    let requests = Arc::clone(&requests);
                    tokio::spawn(async move {
                        // A client hanging up mid-answer is what bad-target tests provoke.
                        let _ = answer(stream, behaviour, requests).await;
                    });
                }
            }
        }
    });
    // Dropping the runtime cancels connections still being served (an endless body, a slow one).
    runtime.shutdown_timeout(Duration::from_secs(1));
}

async fn answer(
    mut stream: TcpStream,
    behaviour: Arc<Mutex<Behaviour>>,
    requests: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut buffer).await?;
        if read == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..read]);
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let behaviour = behaviour
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
    match behaviour {
        Behaviour::Fixed(body) => write_whole(&mut stream, 200, TEXT, None, body.as_bytes()).await,
        Behaviour::Garbage => {
            let body = b"<html>this is { not \"prometheus\" text\n\x00\x01\x02 at all 1 2 3 4\n";
            write_whole(&mut stream, 200, TEXT, None, body).await
        }
        Behaviour::Huge { bytes } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {TEXT}\r\nContent-Length: {bytes}\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            let line =
                b"huge_filler_metric{padding=\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"} 1\n";
            let block: Vec<u8> = line.iter().copied().cycle().take(64 * 1024).collect();
            let mut left = bytes;
            while left > 0 {
                let now = left.min(block.len() as u64) as usize;
                stream.write_all(&block[..now]).await?;
                left -= now as u64;
            }
            stream.shutdown().await
        }
        Behaviour::Endless => {
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Type: {TEXT}\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(b"# TYPE endless_metric gauge\n").await?;
            let mut counter: u64 = 0;
            loop {
                counter += 1;
                stream
                    .write_all(format!("endless_metric{{n=\"{counter}\"}} 1\n").as_bytes())
                    .await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Behaviour::Slow { delay, body } => {
            tokio::time::sleep(delay).await;
            write_whole(&mut stream, 200, TEXT, None, body.as_bytes()).await
        }
        Behaviour::Gzip(body) => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(body.as_bytes())?;
            let compressed = encoder.finish()?;
            write_whole(&mut stream, 200, TEXT, Some("gzip"), &compressed).await
        }
        Behaviour::RequireAuthorization {
            authorization,
            body,
        } => {
            let expected = format!("authorization: {authorization}\r\n").to_ascii_lowercase();
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            if head.contains(&expected) {
                write_whole(&mut stream, 200, TEXT, None, body.as_bytes()).await
            } else {
                write_whole(&mut stream, 401, "text/plain", None, b"unauthorized\n").await
            }
        }
        Behaviour::Status(code) => {
            write_whole(
                &mut stream,
                code,
                "text/plain",
                None,
                format!("status {code}\n").as_bytes(),
            )
            .await
        }
    }
}

async fn write_whole(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    content_encoding: Option<&str>,
    body: &[u8],
) -> std::io::Result<()> {
    let encoding = content_encoding
        .map(|e| format!("Content-Encoding: {e}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\n{encoding}Content-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
