//! One virtual machine: qemu (software emulation) started inside a network namespace made
//! for it, the host's root shared read-only and a results folder shared writable over 9p,
//! optional virtio-net NICs backed by tap devices in that namespace. Bounded in time: past
//! its deadline qemu is killed by its pid; the namespace goes with the guard.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::initramfs::{RESULTS_TAG, ROOT_TAG};
use super::kernel::Kernel;
use super::netns::{ChildGuard, HostNetns};

/// Lines of console output kept to show when a guest fails.
const TAIL_LINES: usize = 60;
/// Console lines that start with this are the guest's progress reports, shown as they come.
pub const REPORT_PREFIX: &str = "mx-vm:";

/// A virtio-net NIC in the guest, backed by tap device `tap` in the VM's host namespace.
pub struct TapNic {
    pub tap: String,
    /// Queue pairs (multi-queue when above 1).
    pub queues: u32,
    /// How the guest finds it.
    pub mac: &'static str,
}

/// What to boot and how.
pub struct Vm<'a> {
    /// Names the namespace and the log lines ("6.12", "6.1-nic").
    pub label: String,
    pub kernel: &'a Kernel,
    pub initrd: PathBuf,
    /// Host folder shared writable (mounted at the same path in the guest).
    pub results: PathBuf,
    pub nics: Vec<TapNic>,
    pub cpus: u32,
    pub memory_mib: u32,
    /// qemu is killed when the guest has not powered off by then.
    pub deadline: Duration,
}

pub struct Outcome {
    pub wall: Duration,
    /// qemu's exit status text, or why it was stopped.
    pub ended: String,
    pub clean: bool,
    pub console_tail: Vec<String>,
}

impl Vm<'_> {
    /// Boots the VM and waits for it to power off. `host_side` runs once the taps exist
    /// (to address them, start peers there); what it returns lives until the VM ends.
    pub fn run<G>(&self, host_side: impl FnOnce(&HostNetns) -> Result<G>) -> Result<Outcome> {
        let netns = HostNetns::new(&self.label)?;
        let mut cmd = netns.command("qemu-system-x86_64");
        cmd.args(self.args()?)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let console_log = self.results.join("console.log");
        let started = Instant::now();
        // Declared after the namespace: dropped (qemu killed and reaped) before it.
        let mut qemu = ChildGuard(
            cmd.spawn()
                .context("cannot start qemu-system-x86_64 (package qemu-system-x86)")?,
        );
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let log = Arc::new(Mutex::new(
            std::fs::File::create(&console_log)
                .with_context(|| format!("creating {}", console_log.display()))?,
        ));
        let readers = [
            pump(qemu.0.stdout.take(), &tail, &log, &self.label),
            pump(qemu.0.stderr.take(), &tail, &log, &self.label),
        ];
        let _host_side = match self.wait_for_taps(&netns, &mut qemu) {
            Ok(()) => Some(host_side(&netns)?),
            Err(e) => {
                println!("vm {}: {e:#}", self.label);
                None
            }
        };
        let (ended, clean) = loop {
            if let Some(status) = qemu.0.try_wait()? {
                break (format!("qemu exited ({status})"), status.success());
            }
            if started.elapsed() > self.deadline {
                qemu.0.kill().context("killing qemu")?;
                qemu.0.wait()?;
                break (
                    format!(
                        "qemu killed: the guest was still running after {} s",
                        self.deadline.as_secs()
                    ),
                    false,
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        for reader in readers.into_iter().flatten() {
            let _ = reader.join();
        }
        let console_tail = tail.lock().expect("console tail").iter().cloned().collect();
        Ok(Outcome {
            wall: started.elapsed(),
            ended,
            clean,
            console_tail,
        })
    }

    fn args(&self) -> Result<Vec<String>> {
        for path in [&self.results, &self.initrd, &self.kernel.vmlinuz()] {
            if path.to_string_lossy().contains(',') {
                bail!("qemu cannot take a path with a comma: {}", path.display());
            }
        }
        let mut args: Vec<String> = [
            // One host thread runs both vCPUs: with a thread per vCPU, a vCPU can run stale
            // translated code while the kernel patches its text on the other one (XDP
            // attach rewrites the BPF dispatcher), and 6.12 died with "Oops: int3" there.
            "-accel",
            "tcg,thread=single",
            "-cpu",
            "max",
            "-M",
            "q35",
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
        ]
        .map(String::from)
        .to_vec();
        args.extend([
            "-smp".into(),
            self.cpus.to_string(),
            "-m".into(),
            format!("{}M", self.memory_mib),
            "-kernel".into(),
            self.kernel.vmlinuz().display().to_string(),
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-append".into(),
            "console=ttyS0 quiet panic=-1".into(),
            "-fsdev".into(),
            "local,id=fs0,path=/,security_model=none,readonly=on,multidevs=remap".into(),
            "-device".into(),
            format!("virtio-9p-pci,fsdev=fs0,mount_tag={ROOT_TAG}"),
            "-fsdev".into(),
            format!(
                "local,id=fs1,path={},security_model=none,multidevs=remap",
                self.results.display()
            ),
            "-device".into(),
            format!("virtio-9p-pci,fsdev=fs1,mount_tag={RESULTS_TAG}"),
        ]);
        for (i, nic) in self.nics.iter().enumerate() {
            args.push("-netdev".into());
            args.push(format!(
                "tap,id=n{i},ifname={},script=no,downscript=no,queues={}",
                nic.tap, nic.queues
            ));
            args.push("-device".into());
            // romfile= : no boot ROM (the kernel is booted directly; ipxe may be absent).
            let mq = if nic.queues > 1 {
                format!("mq=on,vectors={}", 2 * nic.queues + 2)
            } else {
                "mq=off".into()
            };
            args.push(format!(
                "virtio-net-pci,netdev=n{i},{mq},mac={},romfile=",
                nic.mac
            ));
        }
        Ok(args)
    }

    /// qemu makes its taps while it starts; wait (bounded) until all exist.
    fn wait_for_taps(&self, netns: &HostNetns, qemu: &mut ChildGuard) -> Result<()> {
        let until = Instant::now() + Duration::from_secs(30);
        for nic in &self.nics {
            while !netns.has_link(&nic.tap) {
                if qemu.0.try_wait()?.is_some() {
                    bail!("qemu ended before tap {} appeared", nic.tap);
                }
                if Instant::now() > until {
                    bail!("tap {} did not appear within 30 s", nic.tap);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }
}

/// Copies one qemu output stream to the console log, keeps its tail and shows the guest's
/// progress reports live.
fn pump(
    stream: Option<impl Read + Send + 'static>,
    tail: &Arc<Mutex<VecDeque<String>>>,
    log: &Arc<Mutex<std::fs::File>>,
    label: &str,
) -> Option<std::thread::JoinHandle<()>> {
    let stream = stream?;
    let (tail, log, label) = (Arc::clone(tail), Arc::clone(log), label.to_owned());
    Some(std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut raw = Vec::new();
        while reader.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&raw)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            raw.clear();
            let _ = writeln!(log.lock().expect("console log"), "{line}");
            // Past whatever terminal codes the firmware left on the line.
            if let Some(at) = line.find(REPORT_PREFIX) {
                println!("vm {label}:{}", &line[at + REPORT_PREFIX.len()..]);
            }
            let mut tail = tail.lock().expect("console tail");
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }))
}
