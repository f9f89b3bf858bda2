//! The test support itself, end to end with no XDP attached: the testbed, every server and
//! every probe work over both address families, and nothing is left behind.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mirror_xdp_tests::netns;
use mirror_xdp_tests::probe::{self, ProbeResult, UdpResult};
use mirror_xdp_tests::servers::{
    self, NGINX_INDEX, Nginx, RSYNC_FILE, RsyncDaemon, TcpListenerSet, UdpEchoSet,
};
use mirror_xdp_tests::testbed::*;

const T: Duration = Duration::from_secs(2);

#[test]
fn testbed_servers_and_probes_work_and_clean_up() {
    mirror_xdp_tests::require_root();
    let pin_dir;
    {
        let tb = Testbed::new().expect("testbed");
        pin_dir = tb.bpffs_dir().to_path_buf();
        assert!(pin_dir.is_dir());
        let _tcp = TcpListenerSet::start(&tb.server, &[8080]).expect("tcp listeners");
        let _udp = UdpEchoSet::start(&tb.server, &[5140]).expect("udp echo");
        let _nginx = Nginx::start(&tb.server).expect("nginx");
        let _rsync = RsyncDaemon::start(&tb.server).expect("rsync daemon");

        let pairs: [(IpAddr, IpAddr); 4] = [
            (CLIENT_V4.into(), SERVER_V4.into()),
            (ADMIN_V4.into(), SERVER_ADMIN_V4.into()),
            (CLIENT_V6.into(), SERVER_V6.into()),
            (ADMIN_V6.into(), SERVER_ADMIN_V6.into()),
        ];
        for (src, dst) in pairs {
            let open = probe::tcp_connect(&tb.client, src, SocketAddr::new(dst, 8080), T);
            assert_eq!(
                open.unwrap(),
                ProbeResult::Open(servers::banner(8080)),
                "{src}"
            );
            let closed = probe::tcp_connect(&tb.client, src, SocketAddr::new(dst, 8081), T);
            assert_eq!(closed.unwrap(), ProbeResult::Refused, "{src}");
            let udp = probe::udp_probe(&tb.client, src, SocketAddr::new(dst, 5140), T);
            assert_eq!(udp.unwrap(), UdpResult::Answered, "{src}");
            let udp = probe::udp_probe(&tb.client, src, SocketAddr::new(dst, 5141), T);
            assert_eq!(udp.unwrap(), UdpResult::Refused, "{src}");
            assert_eq!(
                probe::curl(&tb.client, Some(src), dst).unwrap(),
                NGINX_INDEX
            );
            assert_eq!(
                probe::rsync(&tb.client, Some(src), dst).unwrap(),
                vec![RSYNC_FILE.to_string()]
            );
        }
        // A source address the client does not own is a setup error, not a probe result.
        let bogus: IpAddr = "198.51.100.99".parse().unwrap();
        assert!(
            probe::tcp_connect(
                &tb.client,
                bogus,
                SocketAddr::new(SERVER_V4.into(), 8080),
                T
            )
            .is_err()
        );

        for dst in [IpAddr::from(SERVER_V4), IpAddr::from(SERVER_V6)] {
            let ports = probe::nmap(&tb.client, None, dst).expect("nmap");
            assert_eq!(ports, vec![80, 873, 8080], "nmap {dst}");
        }
        let ports =
            probe::nmap(&tb.client, Some(ADMIN_V4.into()), SERVER_ADMIN_V4.into()).expect("nmap");
        assert_eq!(ports, vec![80, 873, 8080], "nmap from admin");
    }
    assert_eq!(
        netns::leftover(),
        Vec::<String>::new(),
        "namespaces left behind"
    );
    assert!(!pin_dir.exists(), "{} left behind", pin_dir.display());
}
