//! `to`: a server with a public and an admin address. HTTP and HTTPS are open to all on the
//! public address; HTTP and rsync only to the admins, on the admin address; SSH to the
//! admins on any address. Real clients (curl, rsync, TCP connects) probe every port at both
//! addresses from a client and an admin, IPv4 and IPv6.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use mirror_xdp_tests::cli::{attach_policy, port_counts, reason, stats};
use mirror_xdp_tests::probe::{curl, rsync, tcp_connect};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{NGINX_INDEX, Nginx, RSYNC_FILE, RsyncDaemon, TcpListenerSet};
use mirror_xdp_tests::sweep::PROBE_TIMEOUT;
use mirror_xdp_tests::testbed::*;

const POLICY: &str = r#"
version = 1
[sets]
admins = ["203.0.113.10", "2001:db8:a::10"]
public = ["198.51.100.1", "2001:db8:1::1"]
admin_address = ["203.0.113.1", "2001:db8:a::1"]
[[ports]]
proto = "tcp"
ports = [80, 443]
to = ["public"]
[[ports]]
proto = "tcp"
ports = [80, 873]
from = ["admins"]
to = ["admin_address"]
[[ports]]
proto = "tcp"
ports = [22]
from = ["admins"]
"#;

const PORTS: [u16; 4] = [22, 80, 443, 873];

/// The ports `src` reaches at `dst`, each probed with a real client.
fn open_ports(bed: &Testbed, src: IpAddr, dst: IpAddr) -> BTreeSet<u16> {
    let mut open = BTreeSet::new();
    if curl(&bed.client, Some(src), dst).is_ok_and(|body| body == NGINX_INDEX) {
        open.insert(80);
    }
    if rsync(&bed.client, Some(src), dst).is_ok_and(|files| files.iter().any(|f| f == RSYNC_FILE)) {
        open.insert(873);
    }
    for port in [22, 443] {
        let probe = tcp_connect(&bed.client, src, SocketAddr::new(dst, port), PROBE_TIMEOUT)
            .expect("tcp probe");
        if probe.is_open() {
            open.insert(port);
        }
    }
    open
}

#[test]
fn one_port_open_to_all_on_one_address_and_to_admins_on_another() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _web = Nginx::start(&bed.server).expect("nginx");
    let _rsync = RsyncDaemon::start(&bed.server).expect("rsync daemon");
    let _others = TcpListenerSet::start(&bed.server, &[22, 443]).expect("listeners");
    // Without the enforcer every port answers everywhere: what is filtered below is its work.
    let all: BTreeSet<u16> = PORTS.into();
    assert_eq!(
        open_ports(&bed, CLIENT_V4.into(), SERVER_ADMIN_V4.into()),
        all
    );
    attach_policy(&bed, POLICY);

    let (public, admin) = (BTreeSet::from([80, 443]), BTreeSet::from([22, 80, 873]));
    let families: [(IpAddr, IpAddr, IpAddr, IpAddr); 2] = [
        (
            CLIENT_V4.into(),
            ADMIN_V4.into(),
            SERVER_V4.into(),
            SERVER_ADMIN_V4.into(),
        ),
        (
            CLIENT_V6.into(),
            ADMIN_V6.into(),
            SERVER_V6.into(),
            SERVER_ADMIN_V6.into(),
        ),
    ];
    for (client, admin_src, public_dst, admin_dst) in families {
        let seen = [
            (client, public_dst, open_ports(&bed, client, public_dst)),
            (client, admin_dst, open_ports(&bed, client, admin_dst)),
            (
                admin_src,
                public_dst,
                open_ports(&bed, admin_src, public_dst),
            ),
            (admin_src, admin_dst, open_ports(&bed, admin_src, admin_dst)),
        ];
        for (src, dst, open) in &seen {
            eprintln!("{src} -> {dst}: open {open:?}");
        }
        let expected = [
            public.clone(),
            BTreeSet::new(),
            &public | &BTreeSet::from([22]),
            admin.clone(),
        ];
        for ((src, dst, open), want) in seen.iter().zip(&expected) {
            assert_eq!(open, want, "{src} -> {dst}");
        }
    }
    // Port 443 at the admin address and 873 at the public one are listed by no rule there:
    // closed, as the policy's default says. The client at the admin address: not an admin.
    let s = stats(&bed);
    assert!(reason(&s, "port_closed", "drop_packets") > 0);
    assert!(reason(&s, "source_not_allowed", "drop_packets") > 0);
    let (pass, drop) = port_counts(&s, "tcp", 80).expect("tcp/80 counted");
    assert!(
        pass > 0 && drop > 0,
        "tcp/80: {pass} passed, {drop} dropped"
    );
}
