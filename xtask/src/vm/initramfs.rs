//! The guest's initramfs: static busybox, the modules that reach the host's root over 9p,
//! and an /init that builds the guest's file system from the host's (read-only) with
//! writable tmpfs where tests write, runs the guest script chrooted there, then powers off.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::cpio::Archive;
use super::kernel::Kernel;

const BUSYBOX: &str = "/bin/busybox";
/// What the kernel needs before it can mount the host's root: virtio PCI transport, 9p.
const BOOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p"];
/// 9p mount tags of the two shares qemu exports (see qemu.rs).
pub const ROOT_TAG: &str = "hostroot";
pub const RESULTS_TAG: &str = "results";

/// Host paths the guest needs as they are on the host.
pub struct Layout<'a> {
    pub kernel: &'a Kernel,
    /// Folders that must stay visible where a tmpfs covers them (the repository, the
    /// target folder: CI may clone under /tmp).
    pub keep: Vec<PathBuf>,
    /// The host folder shared writable, mounted at the same path in the guest.
    pub results: &'a Path,
    /// The script the guest runs chrooted into the host's root (a host path).
    pub script: &'a Path,
}

/// Folders of the host's root that get an empty tmpfs in the guest (with its mode): the
/// tests' temp dirs, network namespaces and pid files, and the CLI's default state folder.
const TMPFS: &[(&str, &str)] = &[
    ("/tmp", "1777"),
    ("/run", "755"),
    ("/var/tmp", "1777"),
    ("/var/lib/mirror-xdp", "700"),
];

pub fn build(layout: &Layout<'_>) -> Result<Vec<u8>> {
    let mut cpio = Archive::default();
    for dir in [
        "/bin", "/sbin", "/dev", "/proc", "/sys", "/newroot", "/aside", "/modules",
    ] {
        cpio.dir(dir.trim_start_matches('/'));
    }
    // The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
    cpio.char_dev("dev/console", 0o600, 5, 1);
    let busybox = std::fs::read(BUSYBOX)
        .with_context(|| format!("reading {BUSYBOX} (package busybox-static)"))?;
    cpio.file("bin/busybox", 0o755, &busybox);
    cpio.symlink("bin/sh", "busybox");
    for (i, module) in layout.kernel.module_files(BOOT_MODULES)?.iter().enumerate() {
        cpio.file(&format!("modules/{i:02}.ko"), 0o644, &module_bytes(module)?);
    }
    // The kernel's module autoloading (request_module) runs this from the initramfs root;
    // it hands the request to the host's modprobe with the unpacked kernel's modules.
    let modprobe = format!(
        "#!/bin/sh\nexec /bin/busybox chroot /newroot /sbin/modprobe -d {} \"$@\"\n",
        quote(&layout.kernel.root)
    );
    cpio.file("sbin/mx-modprobe", 0o755, modprobe.as_bytes());
    cpio.file("init", 0o755, init_script(layout).as_bytes());
    Ok(cpio.finish())
}

/// Module bytes as the kernel loads them: busybox insmod passes the file as it is, and
/// 6.12's modules are xz-compressed.
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "xz") {
        let out = Command::new("xz")
            .arg("-dc")
            .arg(path)
            .output()
            .context("cannot run xz")?;
        if !out.status.success() {
            bail!("xz -dc {} failed", path.display());
        }
        return Ok(out.stdout);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn init_script(layout: &Layout<'_>) -> String {
    let r = "/newroot";
    let mut s = String::from(
        "#!/bin/sh\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/bin\n\
         fail() { echo \"mx-vm: init: $*\"; poweroff -f; }\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sys /sys\n\
         mount -t devtmpfs dev /dev\n\
         for m in /modules/*.ko; do insmod $m || fail \"insmod $m failed\"; done\n",
    );
    s += &format!(
        "mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 {ROOT_TAG} {r} \
         || fail 'cannot mount the host root over 9p'\n"
    );
    // A tmpfs hides what the host has below it: bind those folders aside and back.
    let hidden: Vec<&PathBuf> = layout
        .keep
        .iter()
        .filter(|p| TMPFS.iter().any(|(t, _)| p.starts_with(t)))
        .collect();
    for (i, path) in hidden.iter().enumerate() {
        s += &format!(
            "mkdir /aside/{i} && mount --bind {r}{p} /aside/{i} || fail 'cannot keep {p}'\n",
            p = quote(path)
        );
    }
    for (dir, mode) in TMPFS {
        s += &format!("[ -d {r}{dir} ] && mount -t tmpfs -o mode={mode} tmpfs {r}{dir}\n");
    }
    for (i, path) in hidden.iter().enumerate() {
        s += &format!(
            "mkdir -p {r}{p} && mount --move /aside/{i} {r}{p} || fail 'cannot keep {p}'\n",
            p = quote(path)
        );
    }
    s += &format!(
        "echo /sbin/mx-modprobe > /proc/sys/kernel/modprobe\n\
         mount --move /proc {r}/proc\n\
         mount --move /sys {r}/sys\n\
         mount --move /dev {r}/dev\n\
         mount -t bpf bpf {r}/sys/fs/bpf\n\
         mkdir -p {r}/dev/pts {r}/dev/shm\n\
         mount -t devpts devpts {r}/dev/pts\n\
         mount -t tmpfs tmpfs {r}/dev/shm\n\
         mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 {RESULTS_TAG} {r}{results} \
         || fail 'cannot mount the results share'\n\
         chroot {r} /bin/sh {script} || echo \"mx-vm: init: the guest script failed ($?)\"\n\
         sync\n\
         poweroff -f\n",
        results = quote(layout.results),
        script = quote(layout.script),
    );
    s
}

/// A path as one shell word.
pub fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
