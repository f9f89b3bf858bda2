//! Address-list entries: reading a CIDR or bare address, and telling it from a set name.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

/// What a string item of an address list is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Entry<'a> {
    Net(IpNet),
    Name(&'a str),
}

/// Reads one string item: an address or CIDR, else a set name; `Err` says what is wrong.
pub(super) fn classify(text: &str) -> Result<Entry<'_>, String> {
    match parse_net(text) {
        Ok(net) => Ok(Entry::Net(net)),
        Err(_) if is_identifier(text) => Ok(Entry::Name(text)),
        Err(why) if looks_like_address(text) => Err(format!("bad CIDR/address '{text}': {why}")),
        Err(_) => Err(format!("'{text}' is not an address, CIDR or set name")),
    }
}

/// Whether a string was meant as an address (so a failure to parse deserves the reason).
pub(super) fn looks_like_address(text: &str) -> bool {
    text.contains(['.', ':', '/'])
}

/// A set name: `[A-Za-z_][A-Za-z0-9_-]*`.
pub(super) fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A CIDR ("10.0.0.0/8", "2001:db8::/32") or a bare address (a /32 or /128).
/// A CIDR with host bits set is refused, with the network it probably meant.
pub(super) fn parse_net(text: &str) -> Result<IpNet, String> {
    let Some((addr, len)) = text.split_once('/') else {
        let addr = parse_addr(text)?;
        return Ok(IpNet::from(addr));
    };
    let addr = parse_addr(addr)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("prefix length '{len}' is not a number 0-{max}"));
    }
    let too_long = || format!("prefix length {len} is longer than {max} ({family})");
    let len: u8 = len.parse().map_err(|_| too_long())?;
    let net = IpNet::new(addr, len).map_err(|_| too_long())?;
    if net.trunc() != net {
        return Err(format!("host bits set; did you mean {}?", net.trunc()));
    }
    Ok(net)
}

/// [`parse_net`] for inputs outside the policy (`mirror-xdp source`): the same rules and
/// messages, so a CIDR means the same thing on the command line as in the policy file.
pub fn parse_prefix(text: &str) -> Result<IpNet, String> {
    parse_net(text)
}

fn parse_addr(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not an IPv4 or IPv6 address"))
}

/// Removes exact duplicates, keeping the order of first appearance.
pub(super) fn dedup(list: Vec<IpNet>) -> Vec<IpNet> {
    let mut seen = HashSet::with_capacity(list.len());
    list.into_iter().filter(|net| seen.insert(*net)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_and_bare_addresses_of_both_families() {
        assert_eq!(parse_net("10.0.0.0/8"), Ok(net("10.0.0.0/8")));
        assert_eq!(parse_net("192.0.2.7"), Ok(net("192.0.2.7/32")));
        assert_eq!(parse_net("2001:db8::/32"), Ok(net("2001:db8::/32")));
        assert_eq!(parse_net("2001:db8::1"), Ok(net("2001:db8::1/128")));
        assert_eq!(parse_net("::/0"), Ok(net("::/0")));
        assert_eq!(parse_net("0.0.0.0/0"), Ok(net("0.0.0.0/0")));
        assert_eq!(
            parse_net("::ffff:192.0.2.1"),
            Ok(net("::ffff:192.0.2.1/128"))
        );
    }

    #[test]
    fn host_bits_suggest_the_network() {
        assert_eq!(
            parse_net("10.1.2.3/8"),
            Err("host bits set; did you mean 10.0.0.0/8?".to_string())
        );
        assert_eq!(
            parse_net("2001:db8:a::1/48"),
            Err("host bits set; did you mean 2001:db8:a::/48?".to_string())
        );
    }

    #[test]
    fn bad_prefix_lengths() {
        assert_eq!(
            parse_net("10.0.0.0/33"),
            Err("prefix length 33 is longer than 32 (IPv4)".to_string())
        );
        assert_eq!(
            parse_net("2001:db8::/129"),
            Err("prefix length 129 is longer than 128 (IPv6)".to_string())
        );
        assert_eq!(
            parse_net("10.0.0.0/"),
            Err("prefix length '' is not a number 0-32".to_string())
        );
        assert_eq!(
            parse_net("10.0.0.0/+8"),
            Err("prefix length '+8' is not a number 0-32".to_string())
        );
        assert_eq!(
            parse_net("10.0.0.0/99999999999"),
            Err("prefix length 99999999999 is longer than 32 (IPv4)".to_string())
        );
    }

    #[test]
    fn bad_addresses() {
        assert_eq!(
            parse_net("10.0.0.256"),
            Err("'10.0.0.256' is not an IPv4 or IPv6 address".to_string())
        );
        assert_eq!(
            parse_net("2001:db8::g/32"),
            Err("'2001:db8::g' is not an IPv4 or IPv6 address".to_string())
        );
        assert!(parse_net("fe80::1%eth0").is_err());
        assert!(parse_net("").is_err());
    }

    #[test]
    fn classify_tells_addresses_names_and_junk_apart() {
        assert_eq!(classify("10.0.0.0/8"), Ok(Entry::Net(net("10.0.0.0/8"))));
        assert_eq!(classify("::1"), Ok(Entry::Net(net("::1/128"))));
        assert_eq!(classify("admins"), Ok(Entry::Name("admins")));
        assert_eq!(classify("_peers-v6"), Ok(Entry::Name("_peers-v6")));
        assert_eq!(
            classify("10.1.0.0/8"),
            Err("bad CIDR/address '10.1.0.0/8': host bits set; did you mean 10.0.0.0/8?".into())
        );
        assert_eq!(
            classify("admins/x"),
            Err("bad CIDR/address 'admins/x': 'admins' is not an IPv4 or IPv6 address".into())
        );
        assert_eq!(
            classify("my admins"),
            Err("'my admins' is not an address, CIDR or set name".into())
        );
        assert_eq!(
            classify("9peers"),
            Err("'9peers' is not an address, CIDR or set name".into())
        );
        assert_eq!(
            classify(""),
            Err("'' is not an address, CIDR or set name".into())
        );
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("a"));
        assert!(is_identifier("A_b-9"));
        assert!(!is_identifier("-a"));
        assert!(!is_identifier("1a"));
        assert!(!is_identifier("a.b"));
        assert!(!is_identifier("ä"));
        assert!(!is_identifier(""));
    }

    #[test]
    fn dedup_keeps_first_order() {
        let list = dedup(vec![
            net("10.0.0.0/8"),
            net("::1/128"),
            net("10.0.0.0/8"),
            net("::1/128"),
            net("10.0.0.0/9"),
        ]);
        assert_eq!(
            list,
            vec![net("10.0.0.0/8"), net("::1/128"), net("10.0.0.0/9")]
        );
    }
}
