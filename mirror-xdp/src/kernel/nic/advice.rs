//! Pure judgements on what [`super::Nic`] read: the warnings `attach` prints to stderr (and
//! `audit` reports) with what to change. No I/O here, so each rule is unit-tested.

use super::{BOND_DRIVER, Channels, Offloads, VIRTIO_NET_DRIVER, VLAN_DRIVER};

/// Warnings for the offloads that change what XDP sees in `xdp_mode` ("native" or "skb").
pub fn offloads(iface: &str, offloads: &Offloads, xdp_mode: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (feature, tag) in [
        ("rx-vlan-hw-parse", "802.1Q"),
        ("rx-vlan-stag-hw-parse", "802.1ad"),
    ] {
        if offloads.on(feature) {
            out.push(format!(
                "{iface}: {feature} is on: the NIC may strip the outer {tag} tag before XDP; \
                 the program then judges the packet behind it but never sees the tag (every \
                 VLAN is judged by the same policy, and a frame with one tag too many \
                 arrives with two and is judged instead of dropped as malformed). \
                 `ethtool -K {iface} {feature} off` keeps tags in the frame"
            ));
        }
    }
    for (feature, what) in [
        ("rx-gro-hw", "hardware GRO"),
        ("rx-lro", "LRO (large receive offload)"),
    ] {
        if offloads.on(feature) {
            out.push(format!(
                "{iface}: {feature} is on: {what} merges TCP segments before XDP, so the \
                 program judges one header for many segments and counts them as one. \
                 `ethtool -K {iface} {feature} off`"
            ));
        }
    }
    if xdp_mode == "skb" && offloads.on("rx-gro") {
        out.push(format!(
            "{iface}: rx-gro (generic receive offload) is on and the program runs in skb \
             mode, which comes after GRO: it judges merged segments as one packet and counts \
             them as one. Native mode, or `ethtool -K {iface} gro off`, avoids it"
        ));
    }
    out
}

/// virtio-net gives XDP one TX queue per possible CPU on top of the queue pairs in use
/// (`curr_qp + nr_cpu_ids` in its `virtnet_xdp_set`); where the device has fewer, it warns
/// in the kernel log and runs XDP_TX (the SYN-cookie replies) on shared queues under a lock.
/// Other drivers either bring their own XDP TX rings or refuse native mode outright (then
/// [`native_refused`] says why), so only virtio-net is warned about. `channels` is read
/// before XDP is linked, when no queue is XDP's yet.
pub fn xdp_tx_queues(
    iface: &str,
    driver: Option<&str>,
    channels: Option<Channels>,
    cpus: u32,
) -> Option<String> {
    let channels = channels?;
    if driver != Some(VIRTIO_NET_DRIVER) {
        return None;
    }
    let needed = channels.combined + cpus;
    if channels.max_combined >= needed {
        return None;
    }
    let fewer = match channels.max_combined.checked_sub(cpus) {
        Some(room) if room >= 1 => format!(
            "use fewer queues for receiving before attaching (`ethtool -L {iface} combined \
             {room}`, which leaves {cpus} to XDP), or "
        ),
        _ => String::new(),
    };
    Some(format!(
        "{iface}: virtio-net needs one XDP TX queue per CPU besides the {combined} queue \
         pairs in use, {needed} in all, and the NIC has {max}: XDP_TX, which sends the \
         SYN-cookie replies (limits.syn_cookies), runs in a slower locked mode shared by all \
         CPUs. To fix it, {fewer}give the VM at least {needed} queues (qemu: `-netdev \
         tap,...,queues={needed}` with `-device virtio-net-pci,mq=on,vectors={vectors}`; \
         libvirt: `<driver queues='{needed}'/>` in the interface), then detach and attach \
         again",
        combined = channels.combined,
        max = channels.max_combined,
        vectors = 2 * needed + 2,
    ))
}

/// Why the kernel refused native mode on `iface` (by its driver and the `errno` of the
/// refusal, when the error has one), and what to do about it.
pub fn why_not_native(
    iface: &str,
    driver: Option<&str>,
    vlan_parent: Option<&str>,
    errno: Option<i32>,
) -> String {
    match (driver, errno) {
        (Some(VLAN_DRIVER), _) => {
            let parent = vlan_parent.map_or("its parent device".to_string(), |p| p.to_string());
            format!(
                "VLAN devices have no native XDP. For native speed attach to {parent} \
                 instead: the program parses up to two VLAN tags there and judges the \
                 traffic of every VLAN on it by the policy; keep {iface} (skb mode) only \
                 when this VLAN alone is to be filtered"
            )
        }
        (Some(BOND_DRIVER), _) => "a bond runs native XDP only when every slave's driver \
             does, in the round-robin, active-backup, balance-xor or 802.3ad mode (and not \
             with xmit_hash_policy vlan+srcmac): check the slaves (`ethtool -i SLAVE`) and \
             the bond's mode"
            .to_string(),
        (_, Some(libc::ERANGE)) => format!(
            "the driver has no multi-buffer XDP, so it takes XDP only while a frame fits one \
             buffer: lower the MTU (`ip link set {iface} mtu 1500`) for native mode, or use \
             a kernel whose driver has it"
        ),
        (Some(VIRTIO_NET_DRIVER), _) => "virtio-net refuses XDP while the host offloads \
             LRO to the guest and cannot turn it off (guest_tso4/6, guest_ecn, guest_ufo, \
             guest_csum: the VM's NIC needs `guest_tso4=off,guest_tso6=off,guest_ecn=off,\
             guest_ufo=off` or the ctrl_guest_offloads feature), or at an MTU too large \
             for one buffer (before Linux 6.3 its XDP takes no multi-buffer frames); the \
             kernel log (`dmesg`) names which"
            .to_string(),
        (driver, Some(libc::EOPNOTSUPP)) => format!(
            "the driver{} has no native XDP",
            driver.map_or(String::new(), |d| format!(" ({d})"))
        ),
        _ => "the kernel log (`dmesg`) may say more".to_string(),
    }
}

/// The warning of an `auto` fallback: the kernel's `error`, [`why_not_native`] and what
/// skb mode costs.
pub fn skb_fallback(iface: &str, error: &str, why: &str) -> String {
    format!(
        "{iface}: native XDP refused ({error}): {why}; falling back to skb (generic) mode: \
         there the program runs only after the kernel has built a socket buffer for each \
         packet (and after GRO), so every dropped packet costs several times the CPU of a \
         native drop and a flood loads the stack; `--xdp-mode native` makes this an error \
         instead"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offloads_on(names: &[&str]) -> Offloads {
        Offloads {
            features: names.iter().map(|n| (n.to_string(), true)).collect(),
        }
    }

    fn virtio(max_combined: u32, combined: u32) -> Option<Channels> {
        Some(Channels {
            max_combined,
            combined,
        })
    }

    #[test]
    fn offloads_that_hide_headers_are_named_with_the_command_that_turns_them_off() {
        let all = offloads_on(&[
            "rx-vlan-hw-parse",
            "rx-vlan-stag-hw-parse",
            "rx-lro",
            "rx-gro",
        ]);
        let native = offloads("eth0", &all, "native");
        assert_eq!(native.len(), 3, "{native:#?}");
        assert!(native[0].contains("ethtool -K eth0 rx-vlan-hw-parse off"));
        assert!(native[1].contains("802.1ad"));
        assert!(native[2].contains("ethtool -K eth0 rx-lro off"));
        // GRO comes before the program only in skb mode.
        let skb = offloads("eth0", &all, "skb");
        assert_eq!(skb.len(), 4);
        assert!(skb[3].contains("ethtool -K eth0 gro off"));
        assert!(offloads("eth0", &Offloads::default(), "skb").is_empty());
        let off = Offloads {
            features: [("rx-vlan-hw-parse".to_string(), false)].into(),
        };
        assert!(offloads("eth0", &off, "native").is_empty());
    }

    #[test]
    fn virtio_net_with_too_few_queues_for_one_xdp_queue_per_cpu_is_warned_about() {
        let warn = |max, combined, cpus| {
            xdp_tx_queues("eth0", Some("virtio_net"), virtio(max, combined), cpus)
        };
        // 2 CPUs, 2 queue pairs in use: XDP wants 4.
        let w = warn(2, 2, 2).expect("2 + 2 > 2");
        assert!(w.contains("4 in all, and the NIC has 2"), "{w}");
        assert!(w.contains("queues=4") && w.contains("vectors=10"), "{w}");
        assert!(w.contains("<driver queues='4'/>"), "{w}");
        // No room to give: only the VM's queue count helps.
        assert!(!w.contains("ethtool -L"), "{w}");
        // 8 queues, 8 in use, 4 CPUs: receiving on 4 leaves 4 to XDP.
        let w = warn(8, 8, 4).expect("8 + 4 > 8");
        assert!(w.contains("ethtool -L eth0 combined 4"), "{w}");
        // Enough: 8 queues, 4 in use, 4 CPUs; and the boundary one short of it.
        assert_eq!(warn(8, 4, 4), None);
        assert!(warn(8, 5, 4).is_some());
    }

    #[test]
    fn only_virtio_net_is_warned_about_queues() {
        for driver in [None, Some("veth"), Some("mlx5_core"), Some("bonding")] {
            assert_eq!(
                xdp_tx_queues("eth0", driver, virtio(1, 1), 8),
                None,
                "{driver:?}"
            );
        }
        assert_eq!(xdp_tx_queues("eth0", Some("virtio_net"), None, 8), None);
    }

    #[test]
    fn a_refused_native_mode_says_why_and_what_to_do() {
        let vlan = why_not_native(
            "eth0.100",
            Some(VLAN_DRIVER),
            Some("eth0"),
            Some(libc::EOPNOTSUPP),
        );
        assert!(
            vlan.starts_with("VLAN devices have no native XDP"),
            "{vlan}"
        );
        assert!(vlan.contains("attach to eth0 instead"), "{vlan}");
        let unknown_parent = why_not_native("v.7", Some(VLAN_DRIVER), None, None);
        assert!(unknown_parent.contains("attach to its parent device"));

        let mtu = why_not_native("eth1", Some("veth"), None, Some(libc::ERANGE));
        assert!(mtu.contains("ip link set eth1 mtu 1500"), "{mtu}");
        let none = why_not_native("eth1", Some("dummy"), None, Some(libc::EOPNOTSUPP));
        assert_eq!(none, "the driver (dummy) has no native XDP");
        let bond = why_not_native("bond0", Some(BOND_DRIVER), None, Some(libc::EOPNOTSUPP));
        assert!(bond.contains("every slave"), "{bond}");
        let virtio = why_not_native("eth0", Some("virtio_net"), None, Some(libc::EINVAL));
        assert!(virtio.contains("guest_tso4"), "{virtio}");
        assert!(why_not_native("eth0", None, None, None).contains("dmesg"));
    }

    #[test]
    fn a_fallback_names_the_kernel_error_the_reason_and_the_cost() {
        let w = skb_fallback(
            "eth0.100",
            "Operation not supported (os error 95)",
            "because",
        );
        assert!(
            w.starts_with(
                "eth0.100: native XDP refused (Operation not supported (os error 95)): because;"
            ),
            "{w}"
        );
        assert!(w.contains("falling back to skb (generic) mode"), "{w}");
        assert!(w.contains("several times the CPU"), "{w}");
    }
}
