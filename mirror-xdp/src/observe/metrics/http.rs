//! The metrics endpoint: a minimal HTTP/1.x server on one std thread, one request at a time.
//! Prometheus scrapes every few seconds; a thread and a blocking socket are all it needs.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::CONTENT_TYPE;

/// How often the accept loop looks at `stop`: the longest a stop request waits.
const POLL: Duration = Duration::from_millis(50);
/// The whole request head must arrive within this, so a slow client cannot hold the (only)
/// serving thread.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Larger request heads are refused; a scrape request is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;

const INDEX: &str = "mirror-xdp metrics exporter: see /metrics\n";

/// Binds `addr` and serves `GET /metrics` (the text `source` returns; its error becomes a
/// 500 with the message) until `stop` is set. Binding errors are returned here, not in the
/// thread, so a daemon fails at start when the port is taken.
pub fn serve(
    addr: SocketAddr,
    source: impl Fn() -> Result<String, String> + Send + Sync + 'static,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    serve_listener(TcpListener::bind(addr)?, source, stop)
}

/// Like [`serve`] on a listener bound already: bind to port 0 and read `local_addr` first to
/// learn the port (tests do).
pub fn serve_listener(
    listener: TcpListener,
    source: impl Fn() -> Result<String, String> + Send + Sync + 'static,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    // Non-blocking accept, polled: std has no accept timeout, and `stop` must be noticed.
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    // A failed exchange concerns that client only; the next scrape retries.
                    Ok((stream, _)) => {
                        let _ = handle(stream, &source);
                    }
                    // WouldBlock, and transient errors (ECONNABORTED, EMFILE) alike: wait a
                    // moment instead of spinning.
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        })
}

fn handle(mut stream: TcpStream, source: &dyn Fn() -> Result<String, String>) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let head = match read_head(&mut stream)? {
        Head::Complete(head) => head,
        Head::TooLarge => return respond(&mut stream, 431, "text/plain", "request too large\n"),
        // Timed out or closed early: nobody is waiting for an answer that makes sense.
        Head::Incomplete => return Ok(()),
    };
    let mut parts = head.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => match source() {
            Ok(body) => respond(&mut stream, 200, CONTENT_TYPE, &body),
            Err(message) => respond(&mut stream, 500, "text/plain", &format!("{message}\n")),
        },
        ("GET", "/") => respond(&mut stream, 200, "text/plain", INDEX),
        ("GET", _) => respond(&mut stream, 404, "text/plain", "not found; see /metrics\n"),
        _ => respond(&mut stream, 405, "text/plain", "only GET is served\n"),
    }
}

enum Head {
    /// The request line (the rest of the head is not needed).
    Complete(String),
    TooLarge,
    Incomplete,
}

/// Reads up to the blank line ending the request head, within [`REQUEST_TIMEOUT`] in all
/// (a per-read timeout alone would let a client trickle bytes forever).
fn read_head(stream: &mut TcpStream) -> io::Result<Head> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]);
            let line = head.lines().next().unwrap_or("").to_string();
            return Ok(Head::Complete(line));
        }
        if buf.len() >= MAX_HEAD {
            return Ok(Head::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Head::Incomplete);
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(Head::Incomplete),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Head::Incomplete);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(
        source: impl Fn() -> Result<String, String> + Send + Sync + 'static,
    ) -> (SocketAddr, Arc<AtomicBool>, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = serve_listener(listener, source, stop.clone()).unwrap();
        (addr, stop, handle)
    }

    /// Sends `request` raw and returns the whole response.
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request).unwrap();
        // Until EOF, or a reset: a server that refuses a request closes with bytes unread.
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = s.read(&mut chunk) {
            out.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(out).unwrap()
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n").as_bytes(),
        )
    }

    #[test]
    fn serves_metrics_index_and_404_then_stops() {
        let (addr, stop, handle) = start(|| Ok("mirror_xdp_info{mode=\"enforce\"} 1\n".into()));

        let r = get(addr, "/metrics");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{r}"
        );
        assert!(r.contains("\r\nContent-Length: 34\r\n"), "{r}");
        assert!(
            r.ends_with("\r\n\r\nmirror_xdp_info{mode=\"enforce\"} 1\n"),
            "{r}"
        );

        assert!(get(addr, "/metrics?x=1").starts_with("HTTP/1.1 200 OK\r\n"));
        let index = get(addr, "/");
        assert!(index.starts_with("HTTP/1.1 200 OK\r\n") && index.contains("/metrics"));
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404 Not Found\r\n"));
        let post = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");

        stop.store(true, Ordering::Relaxed);
        let t = Instant::now();
        handle.join().unwrap();
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(
            TcpStream::connect(addr).is_err(),
            "listener closed after stop"
        );
    }

    #[test]
    fn source_error_is_a_500_with_the_message() {
        let (addr, stop, handle) = start(|| Err("nothing is attached".into()));
        let r = get(addr, "/metrics");
        assert!(
            r.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
            "{r}"
        );
        assert!(r.ends_with("\r\n\r\nnothing is attached\n"), "{r}");
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
    }

    #[test]
    fn slow_and_oversized_clients_do_not_block_others() {
        let (addr, stop, handle) = start(|| Ok("ok\n".into()));
        // Connects and says nothing: served up to the timeout, then dropped.
        let mut idle = TcpStream::connect(addr).unwrap();
        idle.write_all(b"GET /metr").unwrap();
        let t = Instant::now();
        assert!(get(addr, "/metrics").starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(t.elapsed() < REQUEST_TIMEOUT + Duration::from_secs(1));

        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 100, b'a');
        big.extend_from_slice(b"\r\n\r\n");
        let r = exchange(addr, &big);
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
    }
}
