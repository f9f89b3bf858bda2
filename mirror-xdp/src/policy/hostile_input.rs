//! Set files as they come from other tools and hands: CRLF, a BOM, duplicates, overlapping
//! prefixes (accepted, meaning what a user expects), junk lines (refused at file:line), and
//! `from` lists too long for the kernel's tables (refused at the list, not at attach).

use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::IpNet;

use super::{Policy, PolicyError};
use crate::model::{ModelState, classify, test_frames as frames};
use mirror_xdp_common::Reason;

const POLICY: &str = r#"version = 1
[sets]
peers = { file = "peers.txt" }
[[ports]]
proto = "udp"
ports = [53]
from = ["peers"]
[sources]
allow = ["198.51.100.7"]
deny = [{ file = "peers.txt" }]
"#;

fn load(set_file: &[u8]) -> Result<Policy, PolicyError> {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("peers.txt"), set_file).expect("set file");
    Policy::parse(POLICY, &dir.path().join("policy.toml"))
}

fn net(s: &str) -> IpNet {
    s.parse().expect("test prefix")
}

#[test]
fn crlf_bom_duplicates_and_overlaps_are_accepted_once_each() {
    let file =
        b"\xef\xbb\xbf# exported by a Windows tool\r\n198.51.100.0/24\r\n198.51.100.0/24\r\n\
        198.51.100.128/25\r\n198.51.100.7\r\n2001:db8::/32\r\n2001:db8:1::/48 # inside\r\n";
    let policy = load(file).expect("valid");
    let expected = [
        "198.51.100.0/24",
        "198.51.100.128/25",
        "198.51.100.7/32",
        "2001:db8::/32",
        "2001:db8:1::/48",
    ]
    .map(net)
    .to_vec();
    assert_eq!(policy.deny, expected);
    assert_eq!(policy.sets["peers"], expected);
    assert_eq!(policy.rules[0].from.as_ref(), Some(&expected));
}

#[test]
fn overlapping_entries_mean_the_union_and_allow_wins() {
    let policy = load(b"198.51.100.0/25\r\n198.51.100.0/24\r\n198.51.100.7\r\n").expect("valid");
    let udp_from = |src: [u8; 4]| {
        let udp = frames::udp(40000, 53);
        let dst = Ipv4Addr::new(198, 51, 100, 1);
        let frame = frames::eth(
            &[],
            frames::IPV4,
            &frames::ipv4(src.into(), dst, 17, &[], 0, &udp),
        );
        let mut state = ModelState::default();
        classify(&frame, &policy, &mut state).reason
    };
    // Inside both prefixes, inside only the wider one: denied either way.
    assert_eq!(udp_from([198, 51, 100, 9]), Reason::Denied);
    assert_eq!(udp_from([198, 51, 100, 200]), Reason::Denied);
    // Listed in the deny file too, but `sources.allow` is checked first.
    assert_eq!(udp_from([198, 51, 100, 7]), Reason::Trusted);
    assert_eq!(udp_from([203, 0, 113, 9]), Reason::SourceNotAllowed);
}

#[test]
fn a_junk_line_is_refused_at_its_line() {
    let e = load(b"198.51.100.0/24\r\n\r\n  not-an-address\r\n").unwrap_err();
    assert!(e.file.ends_with("peers.txt"), "{e}");
    assert_eq!((e.line, e.column), (3, 3), "{e}");
    assert!(
        e.to_string()
            .contains("'not-an-address' is not an address or CIDR"),
        "{e}"
    );
    let e = load(b"198.51.100.0/24 198.51.100.1\n").unwrap_err();
    assert_eq!(e.line, 1, "{e}");
    assert!(e.message.contains("one address or CIDR per line"), "{e}");
    let e = load(b"198.51.100.0/24\n\x00\x01binary\n").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn a_from_list_longer_than_the_kernel_table_is_refused_at_the_list() {
    let count = mirror_xdp_common::capacity::FROM_V4 + 1;
    let mut file = String::new();
    for i in 0..count {
        file.push_str(&format!("{}\n", std::net::Ipv4Addr::from(0x0a00_0000 + i)));
    }
    let e = load(file.as_bytes()).unwrap_err();
    assert!(e.file.ends_with("policy.toml"), "{e}");
    // `from = ["peers"]` is on line 7, column 8.
    assert_eq!((e.line, e.column), (7, 8), "{e}");
    assert!(e.message.contains("at most 262144 fit"), "{e}");
    assert!(Path::new(&e.file).is_absolute());
}
