//! Real servers inside a namespace (TCP banner listeners, UDP echo and counter, nginx, rsync
//! daemon), each stopped on drop, so tests see what a mirror's clients would see.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, Socket, Type};
use tempfile::TempDir;

use crate::netns::{ChildGuard, Netns};
use crate::wait::stretched;

/// A server thread never outlives this, even if its guard is leaked: 10 minutes, stretched
/// under emulation (a 6.1 guest runs the reload fault test for over 10 minutes).
fn max_lifetime() -> Duration {
    stretched(Duration::from_secs(600))
}
const POLL: Duration = Duration::from_millis(20);

/// Content of nginx's index.html, for `curl` checks.
pub const NGINX_INDEX: &str = "mirror-xdp test mirror\n";
/// The file the rsync module `mirror` holds, and its content.
pub const RSYNC_FILE: &str = "README.mirror";
pub const RSYNC_CONTENT: &str = "mirror-xdp rsync test file\n";

/// The banner a [`TcpListenerSet`] port sends: `port N\n`.
pub fn banner(port: u16) -> String {
    format!("port {port}\n")
}

/// Binds 0.0.0.0:port and [::]:port (v6-only, so the two do not collide) in the calling
/// thread's namespace.
fn bind_both(ty: Type, port: u16) -> Result<[Socket; 2]> {
    let v4: SocketAddr = (Ipv4Addr::UNSPECIFIED, port).into();
    let v6: SocketAddr = (Ipv6Addr::UNSPECIFIED, port).into();
    let proto = if ty == Type::STREAM {
        Protocol::TCP
    } else {
        Protocol::UDP
    };
    let mut out = Vec::new();
    for addr in [v4, v6] {
        let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_reuse_address(true)?;
        s.bind(&addr.into())
            .with_context(|| format!("binding {addr}"))?;
        if ty == Type::STREAM {
            s.listen(128)?;
        }
        out.push(s);
    }
    Ok(out.try_into().expect("two sockets"))
}

/// Stop flag plus the serving thread; dropping stops and joins it.
struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn start(body: impl FnOnce(&AtomicBool) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || body(&flag));
        Worker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// TCP listeners on the given ports (IPv4 and IPv6) that answer every connection with
/// [`banner`] and close it.
pub struct TcpListenerSet {
    _worker: Worker,
}

impl TcpListenerSet {
    pub fn start(ns: &Netns, ports: &[u16]) -> Result<Self> {
        let listeners = ns.enter(|| -> Result<Vec<(u16, TcpListener)>> {
            let mut out = Vec::new();
            for &port in ports {
                for s in bind_both(Type::STREAM, port)? {
                    // Non-blocking: the loop polls the stop flag between accepts.
                    s.set_nonblocking(true)?;
                    out.push((port, s.into()));
                }
            }
            Ok(out)
        })?;
        let worker = Worker::start(move |stop| {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < max_lifetime() {
                let mut idle = true;
                for (port, listener) in &listeners {
                    if let Ok((stream, _)) = listener.accept() {
                        idle = false;
                        answer(stream, *port);
                    }
                }
                if idle {
                    std::thread::sleep(POLL);
                }
            }
        });
        Ok(TcpListenerSet { _worker: worker })
    }
}

fn answer(mut stream: TcpStream, port: u16) {
    // Accepted sockets may inherit non-blocking mode; a short blocking write is simpler.
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(banner(port).as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// UDP sockets on the given ports (IPv4 and IPv6) that echo every datagram to its sender.
pub struct UdpEchoSet {
    _worker: Worker,
}

impl UdpEchoSet {
    pub fn start(ns: &Netns, ports: &[u16]) -> Result<Self> {
        let sockets = ns.enter(|| -> Result<Vec<UdpSocket>> {
            let mut out = Vec::new();
            for &port in ports {
                for s in bind_both(Type::DGRAM, port)? {
                    s.set_nonblocking(true)?;
                    out.push(s.into());
                }
            }
            Ok(out)
        })?;
        let worker = Worker::start(move |stop| {
            let started = Instant::now();
            // Whole jumbo datagrams (8,000 bytes over MTU 9000) come back whole.
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) && started.elapsed() < max_lifetime() {
                let mut idle = true;
                for socket in &sockets {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        idle = false;
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
                if idle {
                    std::thread::sleep(POLL);
                }
            }
        });
        Ok(UdpEchoSet { _worker: worker })
    }
}

/// A UDP socket on 0.0.0.0:port that counts every datagram it receives, whatever its
/// content: what reaches a port the policy closes.
pub struct UdpCounter {
    count: Arc<AtomicU64>,
    _worker: Worker,
}

impl UdpCounter {
    pub fn start(ns: &Netns, port: u16) -> Result<Self> {
        let socket = ns
            .enter(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))
            .with_context(|| format!("binding udp {port} in {}", ns.name()))?;
        socket.set_read_timeout(Some(POLL))?;
        let count = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&count);
        let worker = Worker::start(move |stop| {
            let started = Instant::now();
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) && started.elapsed() < max_lifetime() {
                if socket.recv_from(&mut buf).is_ok() {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(UdpCounter {
            count,
            _worker: worker,
        })
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

fn accepts(ns: &Netns, port: u16) -> bool {
    let addr: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
    ns.enter(|| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
}

/// Readiness below means "something accepts on the port": make sure it is not someone else.
fn ensure_free(ns: &Netns, port: u16) -> Result<()> {
    if accepts(ns, port) {
        bail!("port {port} is already in use in {}", ns.name());
    }
    Ok(())
}

/// Waits until something accepts TCP on 127.0.0.1:port in `ns`, failing early if the
/// server process died (bounded by `timeout`).
fn wait_tcp_ready(ns: &Netns, child: &mut ChildGuard, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        child.ensure_running()?;
        if accepts(ns, port) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "nothing accepts on port {port} in {} after {timeout:?}",
                ns.name()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temp dir readable by servers that drop privileges to `nobody` (TempDir is 0700).
fn open_tempdir(prefix: &str) -> Result<TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// The last lines of a server's log, for a start-up failure message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// nginx serving [`NGINX_INDEX`] on port 80 (IPv4 and IPv6), everything in a temp dir.
/// One process (`master_process off`), so stopping its pid stops it all.
pub struct Nginx {
    _child: ChildGuard,
    _dir: TempDir,
}

impl Nginx {
    pub fn start(ns: &Netns) -> Result<Self> {
        let dir = open_tempdir("mx-nginx-")?;
        let d = dir.path().display();
        std::fs::create_dir(dir.path().join("www"))?;
        std::fs::write(dir.path().join("www/index.html"), NGINX_INDEX)?;
        let conf = format!(
            "master_process off;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
               access_log {d}/access.log;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               default_type text/plain;\n\
               server {{\n\
                 listen 80;\n\
                 listen [::]:80;\n\
                 root {d}/www;\n\
                 index index.html;\n\
               }}\n\
             }}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let error_log = dir.path().join("error.log");
        ensure_free(ns, 80)?;
        let mut cmd = ns.command("nginx");
        // -p/-e keep nginx away from /var/log/nginx and /etc/nginx entirely.
        cmd.arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = ChildGuard::spawn(&mut cmd)?;
        wait_tcp_ready(ns, &mut child, 80, Duration::from_secs(5))
            .with_context(|| format!("nginx did not start: {}", tail(&error_log)))?;
        Ok(Nginx {
            _child: child,
            _dir: dir,
        })
    }
}

/// `rsync --daemon` on port 873 with a read-only module `mirror` holding [`RSYNC_FILE`].
pub struct RsyncDaemon {
    _child: ChildGuard,
    _dir: TempDir,
}

impl RsyncDaemon {
    pub fn start(ns: &Netns) -> Result<Self> {
        let dir = open_tempdir("mx-rsync-")?;
        let d = dir.path().display();
        let module = dir.path().join("mirror");
        std::fs::create_dir(&module)?;
        std::fs::write(module.join(RSYNC_FILE), RSYNC_CONTENT)?;
        let conf = format!(
            "port = 873\n\
             pid file = {d}/rsyncd.pid\n\
             log file = {d}/rsyncd.log\n\
             use chroot = false\n\
             [mirror]\n\
             path = {}\n\
             read only = true\n",
            module.display()
        );
        let conf_path = dir.path().join("rsyncd.conf");
        std::fs::write(&conf_path, conf)?;
        ensure_free(ns, 873)?;
        let mut cmd = ns.command("rsync");
        cmd.args(["--daemon", "--no-detach"])
            .arg(format!("--config={}", conf_path.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = ChildGuard::spawn(&mut cmd)?;
        let log = dir.path().join("rsyncd.log");
        wait_tcp_ready(ns, &mut child, 873, Duration::from_secs(5))
            .with_context(|| format!("rsync daemon did not start: {}", tail(&log)))?;
        Ok(RsyncDaemon {
            _child: child,
            _dir: dir,
        })
    }
}
