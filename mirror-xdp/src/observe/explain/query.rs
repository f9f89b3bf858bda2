//! What `explain` is asked about, and the frame that stands for it: the first packet of a
//! new connection (a TCP SYN, a UDP datagram, an ICMP echo request, or a packet of another
//! IP protocol) from the source to the destination.

use std::net::IpAddr;

use crate::observe::audit::frame::{self, Payload, SOURCE_PORT};
use crate::policy::{Proto, protocols};

/// What a connection is made to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Port(Proto, u16),
    /// ICMP (ICMPv6 from an IPv6 source): an echo request.
    Icmp,
    /// Another IP protocol by number.
    Protocol(u8),
}

impl Target {
    /// `443/tcp`, `53/udp`, `icmp`, a protocol name of `[[protocols]]` (`vrrp`) or an IP
    /// protocol number (`112`).
    pub fn parse(text: &str) -> Result<Target, String> {
        let lower = text.trim().to_ascii_lowercase();
        if let Some((port, proto)) = lower.split_once('/') {
            let proto = match proto {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                other => {
                    return Err(format!(
                        "'{other}' in '{text}': a port is PORT/tcp or PORT/udp"
                    ));
                }
            };
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("'{port}' in '{text}' is not a port (1-65535)"))?;
            return Ok(Target::Port(proto, port));
        }
        match lower.as_str() {
            "icmp" | "icmpv6" | "ping" => return Ok(Target::Icmp),
            "tcp" | "udp" => {
                return Err(format!("'{text}' needs a port: PORT/{lower}"));
            }
            _ => {}
        }
        let number = protocols::NAMES
            .iter()
            .find(|(name, _)| *name == lower)
            .map(|(_, n)| *n)
            .or_else(|| lower.parse::<u8>().ok());
        match number {
            Some(1 | 58) => Ok(Target::Icmp),
            Some(6 | 17) => Err(format!("'{text}' needs a port: PORT/tcp or PORT/udp")),
            Some(n) => Ok(Target::Protocol(n)),
            None => {
                let names: Vec<&str> = protocols::NAMES.iter().map(|(n, _)| *n).collect();
                Err(format!(
                    "'{text}' is not PORT/tcp, PORT/udp, icmp, an IP protocol number (0-255) \
                     or a protocol name ({})",
                    names.join(", ")
                ))
            }
        }
    }

    /// How the output names it: `tcp/443`, `icmp`, `vrrp`.
    pub fn label(self, v6: bool) -> String {
        match self {
            Target::Port(proto, port) => format!("{}/{port}", proto.name()),
            Target::Icmp if v6 => "icmpv6".into(),
            Target::Icmp => "icmp".into(),
            Target::Protocol(n) => protocols::name(n),
        }
    }

    /// The packet that opens a connection: a SYN, a datagram, an echo request.
    pub fn first_packet(self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let payload = match self {
            Target::Port(Proto::Tcp, port) => frame::tcp(port, frame::flag::SYN, 5, &[]),
            Target::Port(Proto::Udp, port) => frame::udp(port, b"explain"),
            Target::Icmp => {
                let (proto, echo_request) = if src.is_ipv6() { (58, 128) } else { (1, 8) };
                let mut bytes = vec![echo_request, 0, 0, 0];
                bytes.extend_from_slice(&SOURCE_PORT.to_be_bytes());
                bytes.extend_from_slice(&[0, 1]);
                Payload { proto, bytes }
            }
            Target::Protocol(proto) => Payload {
                proto,
                bytes: vec![0; 20],
            },
        };
        frame::ethernet(&[], &frame::ip(src, dst, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_as_ports_icmp_names_and_numbers() {
        assert_eq!(Target::parse("443/tcp"), Ok(Target::Port(Proto::Tcp, 443)));
        assert_eq!(Target::parse("53/UDP"), Ok(Target::Port(Proto::Udp, 53)));
        assert_eq!(Target::parse("icmp"), Ok(Target::Icmp));
        assert_eq!(Target::parse("58"), Ok(Target::Icmp));
        assert_eq!(Target::parse("vrrp"), Ok(Target::Protocol(112)));
        assert_eq!(Target::parse("47"), Ok(Target::Protocol(47)));
        for (bad, says) in [
            ("0/tcp", "is not a port"),
            ("70000/udp", "is not a port"),
            ("22/sctp", "PORT/tcp or PORT/udp"),
            ("tcp", "needs a port"),
            ("6", "needs a port"),
            ("vrp", "protocol name (igmp"),
            ("256", "not PORT/tcp"),
        ] {
            let e = Target::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_first_packet_is_what_the_model_reads_as_that_connection() {
        use crate::model::{L4, Parsed, parse, tcp_flag};
        let (src, dst): (IpAddr, IpAddr) = (
            "2001:db8::2".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        );
        let packet = |t: Target| match parse(&t.first_packet(src, dst)) {
            Ok(Parsed::Ip(p)) => p,
            other => panic!("{t:?}: {other:?}"),
        };
        assert!(matches!(packet(Target::Port(Proto::Tcp, 22)).l4,
            L4::Tcp { dst_port: 22, flags, .. } if flags == tcp_flag::SYN));
        assert!(matches!(
            packet(Target::Port(Proto::Udp, 53)).l4,
            L4::Udp { dst_port: 53, .. }
        ));
        assert!(matches!(
            packet(Target::Icmp).l4,
            L4::Icmp { icmp_type: 128, .. }
        ));
        assert!(matches!(
            packet(Target::Protocol(112)).l4,
            L4::Other { proto: 112 }
        ));
        assert_eq!(packet(Target::Icmp).src, src);
    }
}
