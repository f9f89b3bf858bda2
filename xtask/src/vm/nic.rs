//! `vm-test --nic`: a VM with a multi-queue virtio-net NIC whose tap lives in the VM's host
//! namespace. The guest pings the tap's address and exchanges UDP with an echo there, then
//! attaches the enforcer to the NIC in native mode: UDP to a closed port that arrived before
//! no longer does, and the UDP exchange still works (the reply is return traffic).

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result};

use super::guest::{Step, log_name};
use super::kernel::Kernel;
use super::netns::ChildGuard;
use super::qemu::TapNic;
use super::report::Summary;
use super::run::{GuestRun, MAX_VM};

const TAP: &str = "mxtap0";
const HOST_ADDR: &str = "192.0.2.1";
const GUEST_ADDR: &str = "192.0.2.2";
const ECHO_PORT: u16 = 7000;
/// A port the policy leaves closed; the host side sends to it twice a second.
const CLOSED_PORT: u16 = 9999;

/// Drops inbound TCP/UDP except SSH; replies to what the guest opens pass.
const POLICY: &str = "version = 1\n\
[settings]\n\
default = \"drop\"\n\
icmp = \"pass\"\n\
return_traffic = true\n\
[[ports]]\n\
proto = \"tcp\"\n\
ports = [22]\n";

pub fn run(label: &str, kernel: &Kernel, vm_dir: &Path) -> Result<Summary> {
    let cli = crate::release_dir().join("mirror-xdp");
    let step = Step {
        label: "virtio-net: ping, UDP, native XDP".into(),
        argv: vec!["/bin/sh".into(), "-c".into(), guest_check()],
        cwd: "/".into(),
        timeout_secs: 300,
        one_test: false,
    };
    let mut run = GuestRun::new(label, kernel, vm_dir, std::slice::from_ref(&step), MAX_VM);
    run.env = vec![
        ("MX_CLI", cli.display().to_string()),
        ("MX_POLICY", POLICY.to_owned()),
    ];
    run.nics = vec![TapNic {
        tap: TAP.into(),
        queues: 2,
    }];
    let log = run.results().join(log_name(0));
    let summary = run.boot(|ns| {
        ns.ip(&["addr", "add", &format!("{HOST_ADDR}/24"), "dev", TAP])?;
        ns.ip(&["link", "set", TAP, "up"])?;
        // A UDP echo on the host side of the tap, stopped with the VM.
        let echo = ns
            .command("socat")
            .arg(format!("UDP4-RECVFROM:{ECHO_PORT},reuseaddr,fork"))
            .arg("PIPE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start socat (package socat)")?;
        let echo = ChildGuard(echo);
        // Bounded: 600 datagrams, one every 0.5 s, at most 5 minutes.
        let sender = ns
            .command("hping3")
            .args(["--udp", "-q", "-d", "8", "-c", "600", "-i", "u500000", "-p"])
            .arg(CLOSED_PORT.to_string())
            .arg(GUEST_ADDR)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start hping3 (package hping3)")?;
        Ok((echo, ChildGuard(sender)))
    })?;
    if summary.ok() {
        print!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    Ok(summary)
}

/// The guest's side, as one shell command: every check fails the step.
fn guest_check() -> String {
    format!(
        r#"set -eu
dev=
for d in /sys/class/net/*; do
  if [ "$(basename "$(readlink -f "$d/device/driver")")" = virtio_net ]; then dev=$(basename "$d"); fi
done
[ -n "$dev" ] || {{ echo "no virtio-net interface"; exit 1; }}
echo "virtio-net interface: $dev"
ethtool -l "$dev" | sed -n '/Current/,$p'
ip addr add {GUEST_ADDR}/24 dev "$dev"
ip link set "$dev" up
busybox ping -c 3 -W 5 {HOST_ADDR}
udp() {{ echo "mx-vm-nic $1" | socat -T 5 - UDP4:{HOST_ADDR}:{ECHO_PORT}; }}
[ "$(udp plain)" = "mx-vm-nic plain" ] || {{ echo "no UDP echo across the tap"; exit 1; }}
echo "UDP echo across the tap: ok"
closed() {{ timeout 3 socat -u UDP4-RECV:{CLOSED_PORT} STDOUT | wc -c; }}
[ "$(closed)" -gt 0 ] || {{ echo "no datagrams to the closed port {CLOSED_PORT} before attaching"; exit 1; }}
echo "UDP to port {CLOSED_PORT} arrives before attaching: ok"
state=$(mktemp -d)
export MIRROR_XDP_STATE_DIR="$state/state" MIRROR_XDP_BPFFS=/sys/fs/bpf/mx-vm-nic
printf '%s' "$MX_POLICY" > "$state/policy.toml"
"$MX_CLI" attach --iface "$dev" --policy "$state/policy.toml" --xdp-mode native
"$MX_CLI" status | tee "$state/status"
grep -q native "$state/status" || {{ echo "status does not say native"; exit 1; }}
[ "$(closed)" = 0 ] || {{ echo "datagrams to the closed port {CLOSED_PORT} passed the enforcer"; exit 1; }}
echo "UDP to the closed port {CLOSED_PORT} is dropped: ok"
[ "$(udp enforced)" = "mx-vm-nic enforced" ] || {{ echo "no UDP echo with the enforcer attached"; exit 1; }}
echo "UDP echo with the enforcer attached (native XDP): ok"
"$MX_CLI" detach --iface "$dev"
"#
    )
}
