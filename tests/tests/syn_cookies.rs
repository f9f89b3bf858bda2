//! `limits.syn_cookies` end to end: a spoofed SYN flood (hping3) far over the global SYN
//! budget while an untrusted client connects over and over. With cookies the client gets
//! in (the flood is answered with cookie SYN-ACKs from XDP); without, it gets in only when
//! its SYN finds the budget unspent (hping3 paces in bursts, so that happens) or not at all.
//! Every flood is bounded in packets and seconds.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use mirror_xdp_tests::require_root;
use mirror_xdp_tests::syn_flood::{flood_and_connect, pass_program};
use mirror_xdp_tests::testbed::Testbed;

#[test]
fn syn_cookies_let_clients_in_during_a_syn_flood() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _peer_xdp = pass_program(&bed.client);
    let outcome = flood_and_connect(&bed, true);
    eprintln!(
        "with syn_cookies: IPv4 {}, IPv6 {}; {} SYNs answered with cookies, {} dropped",
        outcome.v4, outcome.v6, outcome.cookies, outcome.syn_flood
    );
    outcome.assert_clients_got_in();
}

/// The same flood without cookies, for comparison: the connect rates are reported, not
/// asserted; the budget must still drop SYNs, and no cookie may be sent.
#[test]
fn without_syn_cookies_for_comparison() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _peer_xdp = pass_program(&bed.client);
    let outcome = flood_and_connect(&bed, false);
    eprintln!(
        "without syn_cookies: IPv4 {}, IPv6 {}; {} SYNs dropped as syn_flood",
        outcome.v4, outcome.v6, outcome.syn_flood
    );
    assert_eq!(outcome.cookies, 0, "cookies while syn_cookies is off");
    // The flood is 100 times the budget: without cookies, SYNs over it are dropped.
    assert!(outcome.syn_flood > 0, "no SYN dropped as syn_flood");
}
