//! VLANs: the enforcer attached natively to the parent veth judges tagged frames (one tag or
//! two) by the policy, VLAN devices on top of it carry real connections through it, a VLAN
//! device itself takes XDP only in skb mode (`auto` says why), and `attach` warns about the
//! VLAN-stripping offload. The tests with VLAN devices need the 8021q module, which the VM's
//! kernels have and the CI host's lacks: they are ignored on the host and run in the VM
//! matrix (README, "Tests in the VM"); a kernel without the module fails them, saying so.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use mirror_xdp_tests::cli::{reason, run, run_ok, stats, stats_when, status, write_policy};
use mirror_xdp_tests::flood::mac;
use mirror_xdp_tests::frames::{Frame, Ipv4, Ipv6, L4, TPID_QINQ, TPID_VLAN, tcp_flag};
use mirror_xdp_tests::netns::Netns;
use mirror_xdp_tests::probe::{ProbeResult, tcp_connect};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{TcpListenerSet, banner};
use mirror_xdp_tests::sweep::PROBE_TIMEOUT;
use mirror_xdp_tests::testbed::*;

const POLICY: &str = r#"
version = 1

[[ports]]
proto = "tcp"
ports = [443]
"#;

const OPEN: u16 = 443;
const CLOSED: u16 = 25;
const VID: u16 = 100;

/// VLAN 100's devices and addresses, one network of each family of their own.
const SERVER_VLAN_IF: &str = "mxs0.100";
const CLIENT_VLAN_IF: &str = "mxc0.100";
const SERVER_VLAN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const CLIENT_VLAN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const SERVER_VLAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
const CLIENT_VLAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2);

/// `attach --iface IFACE --policy POLICY --xdp-mode MODE`, unchecked.
fn attach(bed: &Testbed, iface: &str, mode: &str) -> mirror_xdp_tests::cli::Run {
    let policy = write_policy(bed, "policy.toml", POLICY);
    let policy = policy.to_str().expect("UTF-8 path");
    run(
        bed,
        &[
            "attach",
            "--iface",
            iface,
            "--policy",
            policy,
            "--xdp-mode",
            mode,
        ],
    )
}

fn xdp_mode(bed: &Testbed) -> String {
    let doc = status(bed);
    doc["interfaces"][0]["xdp_mode"]
        .as_str()
        .unwrap_or_else(|| panic!("no xdp_mode in {doc:#}"))
        .to_string()
}

/// VLAN 100 on both veth ends, with addresses. The veth ends put the tag into the frame
/// (`txvlan off`), as it is on a wire, rather than beside it in the packet's metadata.
fn add_vlans(bed: &Testbed) {
    for (ns, parent, dev, v4, v6) in [
        (
            &bed.server,
            SERVER_IF,
            SERVER_VLAN_IF,
            SERVER_VLAN_V4,
            SERVER_VLAN_V6,
        ),
        (
            &bed.client,
            CLIENT_IF,
            CLIENT_VLAN_IF,
            CLIENT_VLAN_V4,
            CLIENT_VLAN_V6,
        ),
    ] {
        let vid = VID.to_string();
        let add = [
            "link", "add", "link", parent, "name", dev, "type", "vlan", "id", &vid,
        ];
        if let Err(e) = ns.run_ok("ip", &add) {
            panic!(
                "cannot add a VLAN device ({e:#}): these tests need the 8021q module \
                 (CONFIG_VLAN_8021Q), which this kernel lacks; they run in the VM: \
                 `cargo xtask vm-test --kernel 6.12 --full --only vlan::`"
            );
        }
        ns.run_ok("ethtool", &["-K", parent, "txvlan", "off"])
            .expect("veth lets txvlan change");
        let v4 = format!("{v4}/24");
        let v6 = format!("{v6}/64");
        for args in [
            vec!["addr", "add", v4.as_str(), "dev", dev],
            vec!["addr", "add", v6.as_str(), "dev", dev, "nodad"],
            vec!["link", "set", dev, "up"],
        ] {
            ns.run_ok("ip", &args).expect("VLAN device setup");
        }
    }
}

/// Real connections over VLAN 100, v4 and v6: the open port answers, the closed one (a
/// listener behind it) times out.
fn assert_enforcing_on_the_vlan(bed: &Testbed, what: &str) {
    for (src, dst) in [
        (IpAddr::from(CLIENT_VLAN_V4), IpAddr::from(SERVER_VLAN_V4)),
        (CLIENT_VLAN_V6.into(), SERVER_VLAN_V6.into()),
    ] {
        let probe = |port| {
            tcp_connect(&bed.client, src, SocketAddr::new(dst, port), PROBE_TIMEOUT).expect("probe")
        };
        assert_eq!(
            probe(OPEN),
            ProbeResult::Open(banner(OPEN)),
            "{what}: {src}"
        );
        assert_eq!(probe(CLOSED), ProbeResult::Timeout, "{what}: {src}");
    }
}

/// A SYN from the client to the server's `port`, behind `tags` (outermost first).
fn tagged_syn(bed: &Testbed, src: IpAddr, port: u16, tags: &[(u16, u16)]) -> Vec<u8> {
    let l4 = L4::tcp(40000, port, tcp_flag::SYN);
    let mut frame = match src {
        IpAddr::V4(src) => Frame::ipv4(Ipv4::new(src, SERVER_V4, l4)),
        IpAddr::V6(src) => Frame::ipv6(Ipv6::new(src, SERVER_V6, l4)),
    };
    for &(tpid, vid) in tags {
        frame = frame.vlan(tpid, vid);
    }
    frame.src_mac = mac(&bed.client, CLIENT_IF).expect("client MAC");
    frame.dst_mac = mac(&bed.server, SERVER_IF).expect("server MAC");
    frame.build()
}

/// Sends `frame` `count` times out of `dev` in `ns` from a packet socket, as it is: the
/// traffic generator takes untagged templates only.
fn send_raw(ns: &Netns, dev: &str, frame: &[u8], count: u64) {
    ns.enter(|| {
        let name = std::ffi::CString::new(dev).expect("interface name");
        // SAFETY: a NUL-terminated name that lives through the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(ifindex, 0, "no {dev} in {}", ns.name());
        // SAFETY: socket() has no memory preconditions; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a fresh descriptor that nothing else owns.
        let _owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = ifindex as i32;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        for _ in 0..count {
            // SAFETY: `frame` and `to` live through the call, their lengths are given.
            let n = unsafe {
                libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const to).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(
                n,
                frame.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
    });
}

#[test]
fn tagged_frames_are_judged_by_the_policy_on_the_parent_in_native_mode() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let r = attach(&bed, SERVER_IF, "native");
    assert_eq!(r.code, Some(0), "{r:?}");
    const SYNS: u64 = 50;
    let qinq = [(TPID_QINQ, 200), (TPID_VLAN, VID)];
    let one = [(TPID_VLAN, VID)];
    for (src, tags, what) in [
        (IpAddr::from(CLIENT_V4), &one[..], "802.1Q, IPv4"),
        (CLIENT_V6.into(), &one[..], "802.1Q, IPv6"),
        (CLIENT_V4.into(), &qinq[..], "802.1ad + 802.1Q, IPv4"),
    ] {
        for (port, counted) in [(OPEN, "allowed"), (CLOSED, "port_closed")] {
            let before = reason(&stats(&bed), counted, "packets");
            let frame = tagged_syn(&bed, src, port, tags);
            send_raw(&bed.client, CLIENT_IF, &frame, SYNS);
            let s = stats_when(&bed, Duration::from_secs(3), |s| {
                reason(s, counted, "packets") >= before + SYNS
            });
            assert_eq!(
                reason(&s, counted, "packets") - before,
                SYNS,
                "{what}, port {port}: every tagged SYN counted as {counted}: {s:#}"
            );
        }
    }
    let s = stats(&bed);
    assert_eq!(
        reason(&s, "port_closed", "drop_packets"),
        3 * SYNS,
        "the SYNs to the closed port dropped: {s:#}"
    );
}

#[test]
#[ignore = "needs the 8021q module: runs in the VM matrix (cargo xtask vm-test)"]
fn vlan_devices_carry_connections_through_the_enforcer_on_the_parent() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    add_vlans(&bed);
    let _tcp = TcpListenerSet::start(&bed.server, &[OPEN, CLOSED]).expect("listeners");
    let r = attach(&bed, SERVER_IF, "native");
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(xdp_mode(&bed), "native");
    assert_enforcing_on_the_vlan(&bed, "attached to the parent");
}

#[test]
#[ignore = "needs the 8021q module: runs in the VM matrix (cargo xtask vm-test)"]
fn a_vlan_device_takes_xdp_in_skb_mode_and_auto_says_why() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    add_vlans(&bed);
    let _tcp = TcpListenerSet::start(&bed.server, &[OPEN, CLOSED]).expect("listeners");

    let r = attach(&bed, SERVER_VLAN_IF, "native");
    assert_eq!(r.code, Some(1), "VLAN devices have no native XDP: {r:?}");
    for needle in [
        "attaching XDP to mxs0.100 in native mode failed",
        "VLAN devices have no native XDP",
        "attach to mxs0 instead",
    ] {
        assert!(r.stderr.contains(needle), "stderr lacks {needle:?}: {r:?}");
    }

    let r = attach(&bed, SERVER_VLAN_IF, "auto");
    assert_eq!(r.code, Some(0), "{r:?}");
    for needle in [
        "warning: mxs0.100: native XDP refused",
        "VLAN devices have no native XDP",
        "falling back to skb (generic) mode",
    ] {
        assert!(r.stderr.contains(needle), "stderr lacks {needle:?}: {r:?}");
    }
    assert_eq!(xdp_mode(&bed), "skb");
    assert_enforcing_on_the_vlan(&bed, "attached to the VLAN device");
    // Only VLAN 100 is filtered: the untagged network on the parent is not.
    let closed_untagged = SocketAddr::new(SERVER_V4.into(), CLOSED);
    let r = tcp_connect(
        &bed.client,
        CLIENT_V4.into(),
        closed_untagged,
        PROBE_TIMEOUT,
    );
    assert_eq!(r.expect("probe"), ProbeResult::Open(banner(CLOSED)));
}

#[test]
fn attach_warns_about_vlan_stripping_while_it_is_on() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let warning = format!("warning: {SERVER_IF}: rx-vlan-hw-parse is on");
    let advice = format!("`ethtool -K {SERVER_IF} rx-vlan-hw-parse off`");
    for (setting, on) in [("on", true), ("off", false)] {
        bed.server
            .run_ok("ethtool", &["-K", SERVER_IF, "rxvlan", setting])
            .expect("veth lets rxvlan change");
        let r = attach(&bed, SERVER_IF, "native");
        assert_eq!(r.code, Some(0), "{r:?}");
        assert_eq!(r.stderr.contains(&warning), on, "rxvlan {setting}: {r:?}");
        assert_eq!(r.stderr.contains(&advice), on, "rxvlan {setting}: {r:?}");
        assert!(
            !r.stdout.contains("warning"),
            "warnings go to stderr: {r:?}"
        );
        run_ok(&bed, &["detach"]);
    }
}
