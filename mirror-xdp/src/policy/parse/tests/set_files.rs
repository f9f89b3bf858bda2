//! Set files: where they may stand, their format (BOM, CRLF, comments), and their errors.

use super::*;

#[test]
fn set_files_everywhere_with_crlf_bom_comments_and_ipv6() {
    let policy = br#"version = 1
[sets]
peers = { file = "peers.txt" }
mixed = ["10.0.0.0/8", { file = "peers.txt" }, "2001:db8:c::1"]
[[ports]]
proto = "tcp"
ports = [873]
from = [{ file = "peers.txt" }, "mixed"]
[sources]
allow = ["peers"]
deny = [{ file = "deny.txt" }]
"#;
    let peers = b"\xef\xbb\xbf# rsync peers\r\n198.51.100.7\r\n\r\n  2001:db8:b::/48  # v6\r\n";
    let deny = b"2001:db8:dead::/48\n# none else";
    let p = load(&[
        ("policy.toml", policy),
        ("peers.txt", peers),
        ("deny.txt", deny),
    ])
    .unwrap();
    let peer_nets = nets(&["198.51.100.7/32", "2001:db8:b::/48"]);
    assert_eq!(p.allow, peer_nets);
    assert_eq!(
        p.rules[0].from,
        Some(nets(&[
            "198.51.100.7/32",
            "2001:db8:b::/48",
            "10.0.0.0/8",
            "2001:db8:c::1/128"
        ]))
    );
    assert_eq!(p.deny, nets(&["2001:db8:dead::/48"]));
}

#[test]
fn set_file_errors_name_the_set_file() {
    let policy = b"version = 1\n[sets]\npeers = { file = \"peers.txt\" }\n";
    let peers = b"\xef\xbb\xbf198.51.100.7\r\n# ok\r\n\t2001:db8:b::1/48 # typo\r\n";
    let (dir, path) = folder(&[("policy.toml", policy), ("peers.txt", peers)]);
    let e = Policy::load(&path).unwrap_err();
    assert_eq!(e.file, dir.path().join("peers.txt"));
    assert_eq!((e.line, e.column), (3, 2));
    assert_eq!(
        e.message,
        "bad CIDR/address '2001:db8:b::1/48': host bits set; did you mean 2001:db8:b::/48?"
    );

    std::fs::write(dir.path().join("peers.txt"), b"10.0.0.1\nadmins\n").unwrap();
    let e = Policy::load(&path).unwrap_err();
    assert_eq!(e.file, dir.path().join("peers.txt"));
    assert_eq!((e.line, e.column), (2, 1));
    assert_eq!(e.message, "'admins' is not an address or CIDR");
}

#[test]
fn missing_set_file_in_a_list_points_at_the_name() {
    let policy = b"version = 1\n[sources]\ndeny = [\"192.0.2.0/24\", { file = \"nope.txt\" }]\n";
    let (dir, path) = folder(&[("policy.toml", policy)]);
    let e = Policy::load(&path).unwrap_err();
    assert_eq!(
        (e.file.as_path(), e.line, e.column),
        (path.as_path(), 3, 34)
    );
    let shown = dir.path().join("nope.txt");
    assert!(
        e.message.starts_with(&format!(
            "cannot read set file 'nope.txt' ({}): ",
            shown.display()
        )),
        "{}",
        e.message
    );
    assert_eq!(
        err("version = 1\n[sets]\na = { file = \"\" }\n"),
        "policy.toml:3:14: empty set file name"
    );
}

#[test]
fn absolute_set_file_paths_and_empty_set_files() {
    let elsewhere = tempfile::tempdir().unwrap();
    let list = elsewhere.path().join("ssh.txt");
    std::fs::write(&list, b"# nobody yet\n").unwrap();
    let policy = format!(
        "version = 1\n[[ports]]\nproto = \"tcp\"\nports = [22]\nfrom = [{{ file = {:?} }}]\n",
        list.display().to_string()
    );
    let p = load(&[("policy.toml", policy.as_bytes())]).unwrap();
    // An empty file is an empty list: the port is closed to everyone, as the file says.
    assert_eq!(p.rules[0].from, Some(vec![]));
}
