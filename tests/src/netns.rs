//! RAII network namespaces and child processes for root tests: nothing outlives its guard.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Prefix of every namespace this process creates, so leak checks can find them.
pub fn prefix() -> String {
    format!("mx-{}-", std::process::id())
}

/// Names of this process's namespaces that still exist (empty once every guard dropped).
pub fn leftover() -> Vec<String> {
    let prefix = prefix();
    std::fs::read_dir("/run/netns")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The first line of every root test: without root it fails, never passes by returning
/// early. `cargo xtask test` runs these tests as root; a plain `cargo test` leaves this
/// crate out (it is not a default member of the workspace).
#[track_caller]
pub fn require_root() {
    assert!(
        is_root(),
        "needs root (BPF, network namespaces, bpffs): run `cargo xtask test` as root"
    );
}

/// A named network namespace (`ip netns add`), deleted on drop; deleting it destroys its
/// interfaces and with them any XDP/TC program attached to them.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `mx-<pid>-<counter>-<role>` with its loopback up.
    pub fn new(role: &str) -> Result<Self> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}{n}-{role}", prefix());
        checked(Command::new("ip").args(["netns", "add", &name]))?;
        // Guard first, so a failure below still deletes the namespace.
        let ns = Netns { name };
        checked(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip netns exec NAME cmd`: for ordinary tools. It remounts /sys, which hides bpffs.
    pub fn command(&self, cmd: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(cmd);
        c
    }

    /// `nsenter --net=PATH cmd`: keeps the host's mounts, so /sys/fs/bpf stays visible (the
    /// mirror-xdp CLI pins there).
    pub fn nsenter_command(&self, cmd: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(cmd);
        c
    }

    /// Runs a tool inside the namespace and collects its output. Panics only if the tool
    /// cannot be started at all (a broken test machine, not a test outcome).
    pub fn run(&self, cmd: &str, args: &[&str]) -> Output {
        output(self.command(cmd).args(args))
    }

    /// Like [`Netns::run`] but through nsenter, with extra environment variables.
    pub fn run_nsenter(
        &self,
        cmd: impl AsRef<OsStr>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Output {
        let mut c = self.nsenter_command(cmd);
        c.args(args).envs(env.iter().copied());
        output(&mut c)
    }

    /// Runs a tool and fails with its stderr unless it exits 0.
    pub fn run_ok(&self, cmd: &str, args: &[&str]) -> Result<Output> {
        checked(self.command(cmd).args(args))
    }

    /// `sysctl -n KEY` in the namespace, trimmed; panics unless it can be read.
    pub fn sysctl(&self, key: &str) -> String {
        let out = self
            .run_ok("sysctl", &["-n", key])
            .unwrap_or_else(|e| panic!("reading {key} in {}: {e:#}", self.name()));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A `TcpExt` counter of the namespace's `/proc/net/netstat` (`SyncookiesSent`, ...).
    pub fn tcp_ext(&self, name: &str) -> Result<u64> {
        let out = self.run_ok("cat", &["/proc/net/netstat"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
        let (names, values) = (
            lines.next().context("no TcpExt names")?,
            lines.next().context("no TcpExt values")?,
        );
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.parse().ok())
            .with_context(|| format!("no TcpExt {name} in {}", self.name()))
    }

    /// Starts a long-running tool in the namespace (stdio to /dev/null); killed on drop.
    pub fn spawn(&self, cmd: &str, args: &[&str]) -> Result<ChildGuard> {
        let mut c = self.command(cmd);
        c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        ChildGuard::spawn(&mut c)
    }

    /// Runs `f` on a fresh thread that has joined this namespace; sockets it creates stay in
    /// the namespace for their whole life, wherever they are used later. The calling thread
    /// is never moved, and the helper thread ends with `f`.
    pub fn enter<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let path = self.path();
        std::thread::scope(|scope| {
            let handle = scope.spawn(move || {
                let file = File::open(&path)
                    .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
                // SAFETY: a valid namespace fd; setns only affects this (helper) thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    panic!(
                        "setns({}) failed: {}",
                        path.display(),
                        std::io::Error::last_os_error()
                    );
                }
                f()
            });
            match handle.join() {
                Ok(r) => r,
                Err(payload) => std::panic::resume_unwind(payload),
            }
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: ip netns delete {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("warning: ip netns delete {}: {e}", self.name),
        }
    }
}

/// A child process that is stopped (SIGTERM, then SIGKILL after 3 s) and reaped on drop.
/// Signals go only to this pid, and only while it is unreaped, so never to a reused pid.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    what: String,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin from /dev/null; stdout/stderr are as the caller set them
    /// (inherited unless redirected, e.g. to a log file).
    pub fn spawn(cmd: &mut Command) -> Result<Self> {
        let what = describe(cmd);
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start `{what}`"))?;
        Ok(ChildGuard { child, what })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The read end of the process's standard output, if it was piped.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The exit status if the process has ended (reaps it).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Fails with the command line if the process has already ended: a server that died.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.try_wait()? {
            bail!("`{}` exited early ({status})", self.what);
        }
        Ok(())
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) if the process is still running.
    pub fn signal(&mut self, sig: i32) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            // SAFETY: the pid is our unreaped child, so it cannot name another process.
            if unsafe { libc::kill(self.child.id() as i32, sig) } != 0 {
                return Err(std::io::Error::last_os_error().into());
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to end by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, a grace period for a clean exit, then SIGKILL; returns the exit status.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        if let Some(status) = self.wait_timeout(Duration::from_secs(3))? {
            return Ok(status);
        }
        self.child.kill()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("warning: stopping `{}`: {e}", self.what);
        }
    }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", describe(cmd)))
}

/// Runs a setup command and fails with its stderr unless it succeeds.
pub(crate) fn checked(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}
