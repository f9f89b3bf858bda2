//! Client-side probes run inside a namespace: raw TCP/UDP checks bound to a chosen source
//! address (ordinary client or admin), and the real tools (curl, rsync, nmap).

use std::fmt;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};

use crate::netns::Netns;

/// Outcome of a TCP connection attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// Handshake completed; carries what the server sent before closing or before the
    /// timeout (empty for servers that wait for the client to speak, such as HTTP).
    Open(String),
    /// A RST came back: the packet reached a host with nothing listening.
    Refused,
    /// Nothing came back in time: dropped on the way.
    Timeout,
}

impl ProbeResult {
    pub fn is_open(&self) -> bool {
        matches!(self, ProbeResult::Open(_))
    }
}

/// Outcome of a UDP probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpResult {
    /// The same payload came back.
    Answered,
    /// An ICMP port-unreachable came back: it reached a host with nothing listening.
    Refused,
    /// Nothing came back in time.
    NoAnswer,
}

/// Connects from `src` (port chosen by the kernel) to `dst` inside `ns` and reads the banner.
/// Errors are for unexpected failures only (e.g. `src` not configured in `ns`).
pub fn tcp_connect(
    ns: &Netns,
    src: IpAddr,
    dst: SocketAddr,
    timeout: Duration,
) -> Result<ProbeResult> {
    ns.enter(|| {
        let started = Instant::now();
        let socket = Socket::new(Domain::for_address(dst), Type::STREAM, None)?;
        socket
            .bind(&SocketAddr::new(src, 0).into())
            .with_context(|| format!("binding {src}"))?;
        match socket.connect_timeout(&dst.into(), timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(ProbeResult::Refused),
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                return Ok(ProbeResult::Timeout);
            }
            Err(e) => return Err(e).with_context(|| format!("connecting {src} -> {dst}")),
        }
        let mut stream: TcpStream = socket.into();
        let left = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        stream.set_read_timeout(Some(left))?;
        let mut banner = Vec::new();
        let mut buf = [0u8; 256];
        // Until the server closes, a line is complete, or the time is up; a silent server
        // still counts as open.
        while !banner.contains(&b'\n') {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => banner.extend_from_slice(&buf[..n]),
            }
        }
        Ok(ProbeResult::Open(
            String::from_utf8_lossy(&banner).into_owned(),
        ))
    })
}

/// Sends one datagram from `src` to `dst` inside `ns` and waits for the echo.
pub fn udp_probe(ns: &Netns, src: IpAddr, dst: SocketAddr, timeout: Duration) -> Result<UdpResult> {
    ns.enter(|| {
        let socket =
            UdpSocket::bind(SocketAddr::new(src, 0)).with_context(|| format!("binding {src}"))?;
        // Connected, so an ICMP port-unreachable surfaces as ECONNREFUSED on recv.
        socket.connect(dst)?;
        socket.set_read_timeout(Some(timeout))?;
        let payload = b"mirror-xdp udp probe";
        match socket.send(payload) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(UdpResult::Refused),
            Err(e) => return Err(e).with_context(|| format!("sending {src} -> {dst}")),
        }
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(UdpResult::NoAnswer);
            }
            socket.set_read_timeout(Some(left))?;
            match socket.recv(&mut buf) {
                Ok(n) if &buf[..n] == payload => return Ok(UdpResult::Answered),
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    return Ok(UdpResult::Refused);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(UdpResult::NoAnswer);
                }
                Err(e) => return Err(e).with_context(|| format!("receiving {dst} -> {src}")),
            }
        }
    })
}

/// Sends `payload` to `target` `n` times, each after the echo of the one before (so all of
/// them went through), and panics unless every one is echoed within 20 s in all.
pub fn send_echoed(socket: &UdpSocket, target: SocketAddr, payload: &[u8], n: u64) {
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("setting the read timeout");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 65536];
    let mut echoed = 0;
    for _ in 0..n {
        socket.send_to(payload, target).expect("sending a datagram");
        while Instant::now() < deadline {
            match socket.recv_from(&mut buf) {
                Ok((len, from)) if from == target && &buf[..len] == payload => {
                    echoed += 1;
                    break;
                }
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => panic!("receiving the echo: {e}"),
            }
        }
    }
    assert_eq!(echoed, n, "every datagram to {target} is echoed");
}

/// A tool that ran but did not succeed: its exit code (None if killed) and stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError {
    pub tool: &'static str,
    pub code: Option<i32>,
    pub stderr: String,
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed (exit {:?}): {}",
            self.tool,
            self.code,
            self.stderr.trim()
        )
    }
}

impl std::error::Error for ToolError {}

/// `host` for a URL: IPv6 literals need brackets.
fn url_host(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

fn tool(ns: &Netns, name: &'static str, args: &[&str]) -> Result<String, ToolError> {
    let out = ns.run(name, args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ToolError {
            tool: name,
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// `curl -s --max-time 3 http://DST/` from `src` (or the kernel's choice): the body, or the
/// failure (exit 28 = timeout, 7 = refused).
pub fn curl(ns: &Netns, src: Option<IpAddr>, dst: IpAddr) -> Result<String, ToolError> {
    let url = format!("http://{}/", url_host(dst));
    let src = src.map(|s| s.to_string());
    let mut args = vec!["-s", "-S", "-g", "--max-time", "3"];
    if let Some(s) = &src {
        args.extend(["--interface", s.as_str()]);
    }
    args.push(&url);
    tool(ns, "curl", &args)
}

/// Lists `rsync://DST/mirror/` from `src`: the file names (without `.`), or the failure.
pub fn rsync(ns: &Netns, src: Option<IpAddr>, dst: IpAddr) -> Result<Vec<String>, ToolError> {
    let url = format!("rsync://{}/mirror/", url_host(dst));
    let address = src.map(|s| format!("--address={s}"));
    // --contimeout bounds the connect, --timeout any stall after it.
    let mut args = vec!["--contimeout=3", "--timeout=5"];
    if let Some(a) = &address {
        args.push(a);
    }
    args.push(&url);
    tool(ns, "rsync", &args).map(|out| parse_rsync_list(&out))
}

/// File names of an rsync listing (`perms size date time name`), skipping `.`.
pub fn parse_rsync_list(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|line| {
            let mut rest = line.trim_start();
            for _ in 0..4 {
                let (_, tail) = rest.split_once(char::is_whitespace)?;
                rest = tail.trim_start();
            }
            (!rest.is_empty() && rest != ".").then(|| rest.to_string())
        })
        .collect()
}

/// SYN scan of ports 1-10000 of `dst` from `src`: the open TCP ports, sorted.
///
/// `--min-rate 5000` is added to the usual command: against a host that drops most ports,
/// nmap's adaptive timing alone needs over 100 s for 10000 ports (it hit the 120 s host
/// timeout here); with it the scan takes about 4 s. A scan that timed out is an error,
/// never a short port list.
pub fn nmap(ns: &Netns, src: Option<IpAddr>, dst: IpAddr) -> Result<Vec<u16>> {
    let dst_s = dst.to_string();
    let src_s = src.map(|s| s.to_string());
    let mut args = vec![
        "-sS",
        "-Pn",
        "-n",
        "-p",
        "1-10000",
        "-T4",
        "--max-retries",
        "1",
    ];
    args.extend(["--min-rate", "5000", "--host-timeout", "120s", "-oG", "-"]);
    if dst.is_ipv6() {
        args.push("-6");
    }
    if let Some(s) = &src_s {
        args.extend(["-S", s.as_str()]);
    }
    args.push(&dst_s);
    let out = tool(ns, "nmap", &args).map_err(anyhow::Error::from)?;
    parse_nmap_open_ports(&out)
        .with_context(|| format!("nmap of {dst} did not complete (host timeout?):\n{out}"))
}

/// Open TCP ports from nmap's grepable output (`-oG -`), sorted and deduplicated; `None`
/// when the output has no port list (the host timed out or was not scanned).
///
/// A host line looks like
/// `Host: 198.51.100.1 ()\tPorts: 80/open/tcp//http///, 873/open/tcp//rsync///\tIgnored State: closed (9998)`.
pub fn parse_nmap_open_ports(out: &str) -> Option<Vec<u16>> {
    let lists: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("Host:"))
        .flat_map(|l| l.split('\t'))
        .filter_map(|field| field.strip_prefix("Ports:"))
        .collect();
    if lists.is_empty() {
        return None;
    }
    let mut ports: Vec<u16> = lists
        .iter()
        .flat_map(|list| list.split(','))
        .filter_map(|entry| {
            let mut parts = entry.trim().split('/');
            let port = parts.next()?.parse().ok()?;
            let state = parts.next()?;
            let proto = parts.next()?;
            (state == "open" && proto == "tcp").then_some(port)
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    Some(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nmap_open_ports_are_parsed_sorted() {
        let out = "# Nmap 7.93 scan initiated as: nmap -sS -oG - 198.51.100.1\n\
            Host: 198.51.100.1 ()\tStatus: Up\n\
            Host: 198.51.100.1 ()\tPorts: 8080/open/tcp//http-proxy///, 80/open/tcp//http///, \
            873/open/tcp//rsync///, 22/filtered/tcp//ssh///\tIgnored State: closed (9996)\n\
            # Nmap done at Fri Nov 28 15:33:00 2025 -- 1 IP address (1 host up) scanned in 1.2 seconds\n";
        assert_eq!(parse_nmap_open_ports(out), Some(vec![80, 873, 8080]));
    }

    #[test]
    fn nmap_without_open_ports_is_empty() {
        let filtered = "Host: 2001:db8:1::1 ()\tStatus: Up\n\
            Host: 2001:db8:1::1 ()\tPorts: \tIgnored State: filtered (10000)\n";
        assert_eq!(parse_nmap_open_ports(filtered), Some(vec![]));
        let udp = "Host: 2001:db8:1::1 ()\tPorts: 5140/open|filtered/udp//unknown///\n";
        assert_eq!(parse_nmap_open_ports(udp), Some(vec![]));
    }

    #[test]
    fn nmap_host_timeout_is_not_a_result() {
        let out = "Host: 198.51.100.1 ()\tStatus: Up\n\
            Host: 198.51.100.1 ()\tStatus: Timeout\n\
            # Nmap done at Sat Nov 28 15:43:45 2026 -- 1 IP address (1 host up) scanned in 3.11 seconds\n";
        assert_eq!(parse_nmap_open_ports(out), None);
    }

    #[test]
    fn rsync_listing_gives_names() {
        let out = "drwxr-xr-x          4,096 2025/11/28 15:33:00 .\n\
            -rw-r--r--             27 2025/11/28 15:33:00 README.mirror\n\
            -rw-r--r--              3 2025/11/28 15:33:00 with space.txt\n";
        assert_eq!(
            parse_rsync_list(out),
            vec!["README.mirror", "with space.txt"]
        );
    }

    #[test]
    fn ipv6_url_hosts_are_bracketed() {
        assert_eq!(
            url_host("2001:db8:1::1".parse().unwrap()),
            "[2001:db8:1::1]"
        );
        assert_eq!(url_host("198.51.100.1".parse().unwrap()), "198.51.100.1");
    }
}
