//! A CrowdSec Local API from Debian's crowdsec binaries (unpacked by `cargo xtask setup`
//! into target/crowdsec), on a namespace's loopback with a config, database and port of
//! its own. `crowdsec -no-cs` runs the LAPI alone; `cscli` adds the machine, the bouncer
//! and the decisions. Stopped by its pid on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::{ChildGuard, Netns};
use crate::wait::poll_until;

/// The LAPI's port on the namespace's loopback.
pub const PORT: u16 = 18080;

fn bin(name: &str) -> PathBuf {
    crate::repo::root()
        .join("target/crowdsec/usr/bin")
        .join(name)
}

pub struct Lapi {
    ns: PathBuf,
    ns_name: String,
    dir: PathBuf,
    daemon: Option<ChildGuard>,
    starts: u32,
    /// With TLS: the private CA that signed the LAPI's certificate.
    ca: Option<PathBuf>,
}

impl Lapi {
    /// Writes the config into `dir` (created), registers a machine for cscli and starts
    /// the LAPI in `ns`, over plain HTTP.
    pub fn start(ns: &Netns, dir: &Path) -> Result<Lapi> {
        Lapi::start_with(ns, dir, false)
    }

    /// Like [`Lapi::start`], over HTTPS with a certificate for 127.0.0.1 from a private CA
    /// made for it ([`Lapi::ca`]).
    pub fn start_tls(ns: &Netns, dir: &Path) -> Result<Lapi> {
        Lapi::start_with(ns, dir, true)
    }

    fn start_with(ns: &Netns, dir: &Path, tls: bool) -> Result<Lapi> {
        if !bin("crowdsec").exists() {
            bail!(
                "{} is missing: `cargo xtask setup` unpacks Debian's crowdsec there",
                bin("crowdsec").display()
            );
        }
        std::fs::create_dir_all(dir.join("data"))?;
        let ca = if tls { Some(certificates(dir)?) } else { None };
        let d = dir.display();
        let tls_config = match tls {
            true => {
                format!("\n    tls:\n      cert_file: {d}/lapi.pem\n      key_file: {d}/lapi.key")
            }
            false => String::new(),
        };
        // No online_client: the LAPI never calls CrowdSec's central API.
        let config = format!(
            "common:\n  daemonize: false\n  log_media: stdout\n  log_level: info\n  working_dir: {d}\n\
             config_paths:\n  config_dir: {d}/\n  data_dir: {d}/data/\n  simulation_path: {d}/simulation.yaml\n  \
             hub_dir: {d}/hub/\n  index_path: {d}/hub/.index.json\n  notification_dir: {d}/notifications/\n  \
             plugin_dir: {d}/plugins/\n\
             cscli:\n  output: human\n\
             db_config:\n  type: sqlite\n  db_path: {d}/data/crowdsec.db\n  use_wal: true\n\
             api:\n  client:\n    credentials_path: {d}/local_api_credentials.yaml\n  server:\n    \
             listen_uri: 127.0.0.1:{PORT}{tls_config}\n    profiles_path: {d}/profiles.yaml\n    \
             trusted_ips:\n      - 127.0.0.1\n\
             prometheus:\n  enabled: false\n"
        );
        std::fs::write(dir.join("config.yaml"), config)?;
        std::fs::write(dir.join("simulation.yaml"), "simulation: false\n")?;
        std::fs::write(
            dir.join("profiles.yaml"),
            "name: default_ip_remediation\nfilters:\n - Alert.Remediation == true && Alert.GetScope() == \"Ip\"\n\
             decisions:\n - type: ban\n   duration: 4h\non_success: break\n",
        )?;
        let mut lapi = Lapi {
            ns: ns.path(),
            ns_name: ns.name().to_string(),
            dir: dir.to_path_buf(),
            daemon: None,
            starts: 0,
            ca,
        };
        let credentials = dir.join("local_api_credentials.yaml");
        lapi.cscli(&[
            "machines",
            "add",
            "mirror-xdp-tests",
            "--auto",
            "-f",
            credentials.to_str().context("UTF-8 path")?,
        ])?;
        if tls {
            // cscli reaches the LAPI at the URL its credentials name.
            let text = std::fs::read_to_string(&credentials)?;
            std::fs::write(&credentials, text.replace("url: http://", "url: https://"))?;
        }
        lapi.restart()?;
        Ok(lapi)
    }

    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{PORT}")
    }

    /// The CA of a TLS LAPI's certificate.
    pub fn ca(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// Runs cscli with this LAPI's config in its namespace; its stdout, or an error with
    /// its output.
    pub fn cscli(&self, args: &[&str]) -> Result<String> {
        let config = self.dir.join("config.yaml");
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.ns.display()))
            .arg("--")
            .arg(bin("cscli"))
            .arg("-c")
            .arg(&config)
            .args(args)
            .envs(self.ca.iter().map(|ca| ("SSL_CERT_FILE", ca)))
            .output()
            .context("running cscli")?;
        if !out.status.success() {
            bail!(
                "cscli {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A bouncer API key (`cscli bouncers add NAME -o raw`).
    pub fn bouncer_key(&self, name: &str) -> Result<String> {
        Ok(self
            .cscli(&["bouncers", "add", name, "-o", "raw"])?
            .trim()
            .to_string())
    }

    /// Kills the LAPI (SIGKILL, as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.signal(libc::SIGKILL);
        }
    }

    /// Starts the LAPI (again), on the same database; waits until it listens.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.starts += 1;
        let log = self.dir.join(format!("crowdsec-{}.log", self.starts));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns.display()))
            .arg("--")
            .arg(bin("crowdsec"))
            .arg("-c")
            .arg(self.dir.join("config.yaml"))
            .arg("-no-cs")
            .stdout(file.try_clone()?)
            .stderr(file);
        let mut daemon = ChildGuard::spawn(&mut cmd)?;
        let listening = poll_until(Duration::from_secs(30), || {
            daemon.ensure_running().is_err()
                || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Local API listening"))
        });
        daemon
            .ensure_running()
            .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
        if listening.is_none() {
            bail!(
                "the LAPI in {} does not listen after 30 s:\n{}",
                self.ns_name,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        self.daemon = Some(daemon);
        Ok(())
    }
}

/// A CA and the LAPI's certificate for 127.0.0.1 signed by it, in `dir`; returns the CA's.
fn certificates(dir: &Path) -> Result<PathBuf> {
    let openssl = |args: &str| -> Result<()> {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .context("running openssl")?;
        if !out.status.success() {
            bail!("openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    openssl(
        "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=mirror-xdp-test-CA \
         -keyout ca.key -out ca.pem",
    )?;
    openssl("req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout lapi.key -out lapi.csr")?;
    std::fs::write(dir.join("lapi.ext"), "subjectAltName=IP:127.0.0.1\n")?;
    openssl(
        "x509 -req -in lapi.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
         -extfile lapi.ext -out lapi.pem",
    )?;
    Ok(dir.join("ca.pem"))
}

impl Drop for Lapi {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A CSV for `cscli decisions import`: `first` (an address), then IPv4 addresses and IPv6
/// /64s, `total` (up to 655,360) ban decisions of 4 hours in all, 90% IPv4. Feeds of other `salt`s (0-200)
/// share no value: the IPv4 addresses are in (10 + salt)/8, the IPv6 ranges in
/// 2001:db8:salt::/48.
pub fn feed_csv(first: &str, total: u32, salt: u32) -> String {
    let mut csv = format!("duration,scope,value\n4h,ip,{first}\n");
    let v4 = total * 9 / 10;
    for i in 1..v4 {
        let o = i.to_be_bytes();
        csv += &format!("4h,ip,{}.{}.{}.{}\n", 10 + salt, o[1], o[2], o[3]);
    }
    for j in 0..total - v4 {
        csv += &format!("4h,range,2001:db8:{salt:x}:{j:x}::/64\n");
    }
    csv
}

/// The numbers of a `run` log line about a pull: (new, pull ms, applied ms later).
pub fn pull_line(line: &str) -> Option<(u64, u64, u64)> {
    let after = |key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    Some((after(", ")?, after("(pull ")?, after("applied ")?))
}

/// A bouncer key of `lapi` in `dir/crowdsec.key`, readable by root only.
pub fn key_file(lapi: &Lapi, dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let key = dir.join("crowdsec.key");
    std::fs::write(&key, lapi.bouncer_key("mirror-xdp")?)?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    Ok(key)
}

/// A policy with TCP `port` open to everyone and `[crowdsec]` pulling from `lapi` every
/// `poll`.
pub fn policy(lapi: &Lapi, key: &Path, port: u16, poll: &str) -> String {
    format!(
        "version = 1\n\n[[ports]]\nproto = \"tcp\"\nports = [{port}]\n\n[crowdsec]\n\
         url = \"{}\"\napi_key_file = \"{}\"\npoll_interval = \"{poll}\"\n",
        lapi.url(),
        key.display()
    )
}
