//! Two namespaces (server, client) on a veth pair, a private bpffs pin dir and state dir for
//! the CLI: the stage for end-to-end tests, torn down completely on drop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::netns::{ChildGuard, Netns, checked};
use crate::wait::stretched;

/// veth end in the server namespace (where XDP attaches).
pub const SERVER_IF: &str = "mxs0";
/// veth end in the client namespace.
pub const CLIENT_IF: &str = "mxc0";

pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The server's address on the admin network.
pub const SERVER_ADMIN_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub const SERVER_ADMIN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
/// An ordinary (untrusted) client.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The admin client (inside 203.0.113.0/24 and 2001:db8:a::/48).
pub const ADMIN_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const ADMIN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 0x10);

/// A second veth pair between the namespaces ([`Testbed::add_second_link`]), on its own /26.
pub const SERVER_IF2: &str = "mxs1";
pub const CLIENT_IF2: &str = "mxc1";
pub const SERVER2_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 65);
pub const CLIENT2_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);

const BPFFS: &str = "/sys/fs/bpf";
static PIN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Field order is drop order: unpin first (ends pinned links, so programs detach), then the
/// namespaces (destroying the veth ends any attachment left), then the temp dirs. Declare
/// server and process guards after the testbed, so they drop (and stop) before it does: a
/// namespace with a process still inside lives on until that process ends.
pub struct Testbed {
    pin_dir: PinDir,
    pub server: Netns,
    pub client: Netns,
    state_dir: TempDir,
    work_dir: TempDir,
}

impl Testbed {
    pub fn new() -> Result<Self> {
        Self::with_link(|server, client| {
            // Created inside the server namespace, peer moved straight into the client one:
            // the host namespace never sees either end.
            let link = format!(
                "link add {SERVER_IF} mtu 1500 type veth peer name {CLIENT_IF} mtu 1500 netns {}",
                client.name()
            );
            ip(server, &link.split_whitespace().collect::<Vec<_>>())?;
            Ok(())
        })
    }

    /// A testbed whose link `make_link` provides: it must leave an interface named
    /// [`SERVER_IF`] in the server namespace and one named [`CLIENT_IF`] in the client one
    /// (a veth pair, two NICs of a VM, two bonds); addresses, GRO and link-up are set here.
    pub fn with_link(make_link: impl FnOnce(&Netns, &Netns) -> Result<()>) -> Result<Self> {
        let pin_dir = PinDir::new()?;
        let server = Netns::new("server")?;
        let client = Netns::new("client")?;
        for ns in [&server, &client] {
            // Before the link exists, so its addresses (link-local too) skip DAD and are
            // usable at once instead of "tentative" for a second or two; and no router
            // solicitations (sent 4 and 8 s after link-up: a slow kernel, e.g. in a VM, is
            // still counting a test's packets then).
            ns.run_ok(
                "sysctl",
                &[
                    "-qw",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.all.router_solicitations=0",
                    "net.ipv6.conf.default.router_solicitations=0",
                ],
            )?;
        }
        make_link(&server, &client)?;
        let server_addrs = [
            format!("{SERVER_V4}/24"),
            format!("{SERVER_ADMIN_V4}/24"),
            format!("{SERVER_V6}/64"),
            format!("{SERVER_ADMIN_V6}/64"),
        ];
        let client_addrs = [
            format!("{CLIENT_V4}/24"),
            format!("{ADMIN_V4}/24"),
            format!("{CLIENT_V6}/64"),
            format!("{ADMIN_V6}/64"),
        ];
        for (ns, dev, addrs) in [
            (&server, SERVER_IF, &server_addrs),
            (&client, CLIENT_IF, &client_addrs),
        ] {
            for addr in addrs {
                let mut args = vec!["addr", "add", addr.as_str(), "dev", dev];
                if addr.contains(':') {
                    args.push("nodad");
                }
                ip(ns, &args)?;
            }
            // Frames injected by XDP_TX or live-frames test runs reach a veth peer only if
            // it runs XDP itself or has GRO on (see TOOLCHAIN.md).
            ns.run_ok("ethtool", &["-K", dev, "gro", "on"])?;
            ip(ns, &["link", "set", dev, "up"])?;
        }
        wait_up(&server, SERVER_IF)?;
        wait_up(&client, CLIENT_IF)?;
        Ok(Testbed {
            pin_dir,
            server,
            client,
            state_dir: tempfile::Builder::new().prefix("mx-state-").tempdir()?,
            work_dir: tempfile::Builder::new().prefix("mx-work-").tempdir()?,
        })
    }

    /// The CLI's bpffs pin directory (`MIRROR_XDP_BPFFS`).
    /// Adds the second link ([`SERVER_IF2`] to [`CLIENT_IF2`]); it dies with the namespaces.
    pub fn add_second_link(&self) -> Result<()> {
        let client = self.client.name().to_string();
        self.server.run_ok(
            "ip",
            &[
                "link", "add", SERVER_IF2, "type", "veth", "peer", "name", CLIENT_IF2, "netns",
                &client,
            ],
        )?;
        let server_addr = format!("{SERVER2_V4}/26");
        let client_addr = format!("{CLIENT2_V4}/26");
        self.server
            .run_ok("ip", &["addr", "add", &server_addr, "dev", SERVER_IF2])?;
        self.server
            .run_ok("ip", &["link", "set", SERVER_IF2, "up"])?;
        self.client
            .run_ok("ip", &["addr", "add", &client_addr, "dev", CLIENT_IF2])?;
        self.client
            .run_ok("ip", &["link", "set", CLIENT_IF2, "up"])?;
        wait_up(&self.server, SERVER_IF2)?;
        wait_up(&self.client, CLIENT_IF2)
    }

    pub fn bpffs_dir(&self) -> &Path {
        &self.pin_dir.path
    }

    /// The CLI's state directory (`MIRROR_XDP_STATE_DIR`).
    pub fn state_dir(&self) -> &Path {
        self.state_dir.path()
    }

    /// Scratch space for policy files, logs and the like; removed on drop.
    pub fn work_dir(&self) -> &Path {
        self.work_dir.path()
    }

    /// The environment that points the CLI at this testbed's pins and state.
    pub fn cli_env(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("MIRROR_XDP_BPFFS", self.bpffs_dir().to_path_buf()),
            ("MIRROR_XDP_STATE_DIR", self.state_dir().to_path_buf()),
        ]
    }

    /// `mirror-xdp` as a command in the server namespace, through nsenter (bpffs visible),
    /// with [`Testbed::cli_env`] set. Add arguments and run it.
    pub fn cli_command(&self, mirror_xdp_bin: &Path) -> Command {
        let mut cmd = self.server.nsenter_command(mirror_xdp_bin);
        cmd.envs(self.cli_env()).stdin(Stdio::null());
        cmd
    }

    /// Runs the CLI to completion in the server namespace. Panics only if it cannot start.
    pub fn cli(&self, mirror_xdp_bin: &Path, args: &[&str]) -> Output {
        self.cli_command(mirror_xdp_bin)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", mirror_xdp_bin.display()))
    }

    /// Starts a long-running CLI (`run ...`), its stdout and stderr going to the returned log
    /// file in the work dir; stopped (SIGTERM, then SIGKILL) when the guard drops.
    pub fn spawn_cli(&self, mirror_xdp_bin: &Path, args: &[&str]) -> Result<(ChildGuard, PathBuf)> {
        self.spawn_cli_env(mirror_xdp_bin, args, &[])
    }

    /// [`Testbed::spawn_cli`] with more environment variables.
    pub fn spawn_cli_env(
        &self,
        mirror_xdp_bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<(ChildGuard, PathBuf)> {
        static LOGS: AtomicU32 = AtomicU32::new(0);
        let log = self
            .work_dir()
            .join(format!("cli-{}.log", LOGS.fetch_add(1, Ordering::Relaxed)));
        let file = std::fs::File::create(&log)?;
        let mut cmd = self.cli_command(mirror_xdp_bin);
        cmd.args(args)
            .envs(env.iter().copied())
            .stdout(file.try_clone()?)
            .stderr(file);
        Ok((ChildGuard::spawn(&mut cmd)?, log))
    }

    /// An address of the server of the same family as `src`, on the same network.
    pub fn server_addr_for(src: IpAddr) -> IpAddr {
        match src {
            IpAddr::V4(a) if a == ADMIN_V4 => SERVER_ADMIN_V4.into(),
            IpAddr::V4(a) if a == CLIENT2_V4 => SERVER2_V4.into(),
            IpAddr::V4(_) => SERVER_V4.into(),
            IpAddr::V6(a) if a == ADMIN_V6 => SERVER_ADMIN_V6.into(),
            IpAddr::V6(_) => SERVER_V6.into(),
        }
    }
}

/// A link's carrier comes up only once both ends are up; wait for it (bounded) so the first
/// probe of a test does not race link setup.
pub fn wait_up(ns: &Netns, dev: &str) -> Result<()> {
    let limit = stretched(Duration::from_secs(5));
    let deadline = Instant::now() + limit;
    loop {
        let out = ip(ns, &["-o", "link", "show", "dev", dev])?;
        if String::from_utf8_lossy(&out.stdout).contains("LOWER_UP") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{dev} in {} did not come up within {limit:?}", ns.name());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ip -n NS ARGS`, failing with its stderr.
pub fn ip(ns: &Netns, args: &[&str]) -> Result<Output> {
    checked(Command::new("ip").arg("-n").arg(ns.name()).args(args))
}

/// A fresh directory on bpffs for the CLI's pins, removed recursively on drop.
struct PinDir {
    path: PathBuf,
}

impl PinDir {
    fn new() -> Result<Self> {
        ensure_bpffs()?;
        let n = PIN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = PathBuf::from(BPFFS).join(format!("mx-test-{}-{n}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(PinDir { path })
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        // `mirror-xdp detach` removes the folder itself when it detaches the last interface.
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("warning: removing {}: {e}", self.path.display());
        }
    }
}

fn ensure_bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 2 && f[1] == BPFFS && f[2] == "bpf"
    });
    if !mounted {
        checked(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    }
    Ok(())
}
