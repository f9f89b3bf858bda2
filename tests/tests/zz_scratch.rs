//! scratch
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use mirror_xdp_tests::probe::{self, ProbeResult, UdpResult};
use mirror_xdp_tests::servers::*;
use mirror_xdp_tests::testbed::*;

#[test]
fn timeouts() {
    let tb = Testbed::new().unwrap();
    let _tcp = TcpListenerSet::start(&tb.server, &[8080]).unwrap();
    let _udp = UdpEchoSet::start(&tb.server, &[5140]).unwrap();
    let _n = Nginx::start(&tb.server).unwrap();
    let o = (tb.server.run("ip", &["route", "add", "blackhole", "198.51.100.2/32"]), tb.server.run("ip", &["-6", "route", "add", "blackhole", "2001:db8:1::2/128"]));
    println!("{:?}", o);
    let t = Instant::now();
    let r = probe::tcp_connect(&tb.client, CLIENT_V4.into(), SocketAddr::new(SERVER_V4.into(), 8080), Duration::from_secs(1)).unwrap();
    println!("{r:?} {:?}", t.elapsed());
    assert_eq!(r, ProbeResult::Timeout);
    let r = probe::udp_probe(&tb.client, CLIENT_V6.into(), SocketAddr::new(SERVER_V6.into(), 5140), Duration::from_secs(1)).unwrap();
    assert_eq!(r, UdpResult::NoAnswer);
    println!("{:?}", probe::curl(&tb.client, None, SERVER_V4.into()));
    let t = Instant::now();
    println!("{:?} {:?}", probe::nmap(&tb.client, None, SERVER_V4.into()), t.elapsed());
    println!("{:?}", probe::rsync(&tb.client, None, SERVER_V4.into()));
    println!("{:?}", tb.cli(std::path::Path::new("/usr/bin/env"), &[]));
    println!("{:?}", tb.server.run_nsenter("ls", &[tb.bpffs_dir().to_str().unwrap()], &[]));
    let out = std::process::Command::new("ps").args(["-eo", "pid,ppid,args"]).output().unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("nginx")||l.contains("rsync")).collect::<Vec<_>>().join("\n"));
    panic!("deliberate");
}
