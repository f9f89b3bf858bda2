//! The sessions a new policy must not cut: the admin's SSH session (`SSH_CONNECTION`) and the
//! established inbound TCP connections of this network namespace (`/proc/net/tcp{,6}`).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Where a session was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The `SSH_CONNECTION` of the command's environment: the admin running it.
    Ssh,
    /// An established inbound connection in `/proc/net/tcp` or `/proc/net/tcp6`.
    Established,
}

/// A TCP session as the client sees it: its packets go from `client` to `server`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    pub origin: Origin,
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// TCP states as `/proc/net/tcp` prints them (include/net/tcp_states.h).
const ESTABLISHED: u8 = 0x01;
const LISTEN: u8 = 0x0A;

/// One line of `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
}

/// Parses `SSH_CONNECTION` ("client_ip client_port server_ip server_port").
pub fn parse_ssh_connection(value: &str) -> Option<(SocketAddr, SocketAddr)> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [client_ip, client_port, server_ip, server_port] = fields[..] else {
        return None;
    };
    let endpoint = |ip: &str, port: &str| -> Option<SocketAddr> {
        // A link-local peer may carry its zone ("fe80::1%eth0"); packets do not.
        let ip: IpAddr = ip.split('%').next()?.parse().ok()?;
        let port: u16 = port.parse().ok()?;
        Some(SocketAddr::new(ip.to_canonical(), port))
    };
    Some((
        endpoint(client_ip, client_port)?,
        endpoint(server_ip, server_port)?,
    ))
}

/// Parses the text of `/proc/net/tcp` or `/proc/net/tcp6`; the header and lines that do
/// not parse are skipped.
pub fn parse_proc_net_tcp(text: &str) -> Vec<TcpSocket> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<TcpSocket> {
    let mut fields = line.split_whitespace();
    fields.next()?.strip_suffix(':')?; // "sl", the slot number
    let local = parse_endpoint(fields.next()?)?;
    let remote = parse_endpoint(fields.next()?)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    Some(TcpSocket {
        local,
        remote,
        state,
    })
}

/// "0100007F:0016" or 32 hex digits and a port. The kernel prints each 32-bit word of the
/// address as a host-order integer (`%08X` of a big-endian word), so the word's native
/// bytes are the address bytes; the port is printed already converted to host order.
fn parse_endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            // A dual-stack socket's IPv4 peer (::ffff:a.b.c.d) sends IPv4 packets.
            Ipv6Addr::from(bytes).to_canonical()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The established connections whose local port has a listener: connections this host
/// accepted, not ones it opened (those come back as return traffic on ephemeral ports).
/// Both files together, since a dual-stack listener in tcp6 accepts IPv4 connections too.
pub fn inbound(sockets: &[TcpSocket]) -> Vec<Session> {
    let listening: HashSet<u16> = sockets
        .iter()
        .filter(|s| s.state == LISTEN)
        .map(|s| s.local.port())
        .collect();
    sockets
        .iter()
        .filter(|s| s.state == ESTABLISHED && listening.contains(&s.local.port()))
        .map(|s| Session {
            origin: Origin::Established,
            client: s.remote,
            server: s.local,
        })
        .collect()
}

/// The addresses of this network namespace's interfaces; `None` if they cannot be read.
pub fn local_addresses() -> Option<HashSet<IpAddr>> {
    let interfaces = nix::ifaddrs::getifaddrs().ok()?;
    let ips = interfaces
        .filter_map(|entry| entry.address)
        .filter_map(|addr| {
            if let Some(v4) = addr.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        });
    Some(ips.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ssh_connection_v4_v6_and_malformed() {
        assert_eq!(
            parse_ssh_connection("203.0.113.9 50122 198.51.100.1 22"),
            Some((sa("203.0.113.9:50122"), sa("198.51.100.1:22")))
        );
        assert_eq!(
            parse_ssh_connection("2001:db8:a::10 40000 2001:db8:1::1 2222\n"),
            Some((sa("[2001:db8:a::10]:40000"), sa("[2001:db8:1::1]:2222")))
        );
        assert_eq!(
            parse_ssh_connection("fe80::2%eth0 40000 fe80::1%eth0 22"),
            Some((sa("[fe80::2]:40000"), sa("[fe80::1]:22")))
        );
        assert_eq!(
            parse_ssh_connection("::ffff:203.0.113.9 50122 ::ffff:198.51.100.1 22"),
            Some((sa("203.0.113.9:50122"), sa("198.51.100.1:22")))
        );
        for bad in [
            "",
            "203.0.113.9 50122 198.51.100.1",
            "203.0.113.9 50122 198.51.100.1 22 extra",
            "203.0.113.900 50122 198.51.100.1 22",
            "203.0.113.9 70000 198.51.100.1 22",
            "host 50122 198.51.100.1 ssh",
        ] {
            assert_eq!(parse_ssh_connection(bad), None, "{bad:?}");
        }
    }

    // Samples as a little-endian machine prints them: a word's bytes appear reversed.
    #[cfg(target_endian = "little")]
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18520 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20417 1 0000000000000000 100 0 0 10 0
   2: 016433C6:0016 097100CB:C3CA 01 00000000:00000000 02:000A2B9B 00000000     0        0 51234 2 0000000000000000 20 4 29 10 -1
   3: 016433C6:B1F4 0A0A0A0A:01BB 01 00000000:00000000 00:00000000 00000000  1000        0 51300 1 0000000000000000 20 4 30 10 -1
   4: 016433C6:0016 026433C6:D431 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
";

    #[cfg(target_endian = "little")]
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 22011 1 0000000000000000 100 0 0 10 0
   1: B80D0120000001000000000001000000:01BB B80D01200000010000000000E1FFEE02:E3A6 01 00000000:00000000 02:00000A21 00000000    33        0 53001 1 0000000000000000 21 4 30 10 -1
   2: 0000000000000000FFFF0000016433C6:01BB 0000000000000000FFFF0000026433C6:9C40 01 00000000:00000000 00:00000000 00000000    33        0 53002 1 0000000000000000 21 4 30 10 -1
";

    #[test]
    #[cfg(target_endian = "little")]
    fn proc_net_tcp_addresses_ports_and_states() {
        let sockets = parse_proc_net_tcp(TCP);
        assert_eq!(sockets.len(), 5, "the header is skipped");
        assert_eq!(sockets[0].local, sa("0.0.0.0:22"));
        assert_eq!(sockets[0].state, LISTEN);
        assert_eq!(sockets[1].local, sa("127.0.0.1:631"));
        assert_eq!(
            sockets[2],
            TcpSocket {
                local: sa("198.51.100.1:22"),
                remote: sa("203.0.113.9:50122"),
                state: ESTABLISHED,
            }
        );
        assert_eq!(sockets[3].remote, sa("10.10.10.10:443"));
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn proc_net_tcp6_words_and_mapped_v4() {
        let sockets = parse_proc_net_tcp(TCP6);
        assert_eq!(sockets.len(), 3);
        assert_eq!(sockets[0].local, sa("[::]:443"));
        assert_eq!(
            sockets[1].local,
            sa("[2001:db8:1::1]:443"),
            "four words, each in host byte order"
        );
        assert_eq!(sockets[1].remote, sa("[2001:db8:1::2ee:ffe1]:58278"));
        assert_eq!(
            sockets[2].local,
            sa("198.51.100.1:443"),
            "::ffff:a.b.c.d is IPv4"
        );
        assert_eq!(sockets[2].remote, sa("198.51.100.2:40000"));
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn inbound_needs_established_and_a_listening_port() {
        let mut sockets = parse_proc_net_tcp(TCP);
        sockets.extend(parse_proc_net_tcp(TCP6));
        let sessions = inbound(&sockets);
        let pairs: Vec<(SocketAddr, SocketAddr)> =
            sessions.iter().map(|s| (s.client, s.server)).collect();
        // The outbound connection to 10.10.10.10:443 (local port 45556, not listening) and
        // the TIME_WAIT one are left out; the tcp6 listener makes 443 inbound for IPv4 too.
        assert_eq!(
            pairs,
            [
                (sa("203.0.113.9:50122"), sa("198.51.100.1:22")),
                (
                    sa("[2001:db8:1::2ee:ffe1]:58278"),
                    sa("[2001:db8:1::1]:443")
                ),
                (sa("198.51.100.2:40000"), sa("198.51.100.1:443")),
            ]
        );
        assert!(sessions.iter().all(|s| s.origin == Origin::Established));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let text = "junk\n 0: 0100007F:00 00000000:0000\n 1: 123:0016 00000000:0000 0A\n";
        assert!(parse_proc_net_tcp(text).is_empty());
    }

    #[test]
    fn local_addresses_include_loopback() {
        let addrs = local_addresses().expect("getifaddrs");
        assert!(
            addrs.contains(&IpAddr::from(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
    }
}
