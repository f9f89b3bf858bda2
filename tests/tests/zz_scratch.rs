//! scratch
use std::time::Instant;
use mirror_xdp_tests::servers::*;
use mirror_xdp_tests::testbed::*;

#[test]
fn nmaps() {
    let tb = Testbed::new().unwrap();
    let _tcp = TcpListenerSet::start(&tb.server, &[8080]).unwrap();
    let _n = Nginx::start(&tb.server).unwrap();
    // Drop all SYN-ACK/RST except from 80 and 8080 => like a firewall dropping closed ports.
    tb.server.run("ip", &["route", "add", "blackhole", "198.51.100.2/32"]);
    for extra in [&["--min-rate", "5000"][..], &["--max-rtt-timeout", "100ms", "--min-rate", "2000"][..], &["--max-rtt-timeout", "50ms"][..]] {
        let t = Instant::now();
        let mut args = vec!["-sS", "-Pn", "-n", "-p", "1-10000", "-T4", "--max-retries", "1", "--host-timeout", "120s", "-oG", "-"];
        args.extend_from_slice(extra);
        args.push("198.51.100.1");
        let o = tb.client.run("nmap", &args);
        println!("{extra:?} {:?}\n{}{}", t.elapsed(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    }
}
