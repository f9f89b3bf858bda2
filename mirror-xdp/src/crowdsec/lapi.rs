//! The CrowdSec Local API as a bouncer sees it: an API key and `GET /v1/decisions/stream`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use ureq::tls::{RootCerts, TlsConfig};

use crate::policy::crowdsec::{Crowdsec, Scope};

/// A pull that takes longer than this failed (a LAPI that accepts and never answers).
const TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer read: a million decisions are about 140 MB.
const MAX_BODY: u64 = 512 << 20;

/// Why a pull failed, by kind (the metrics' `kind` label).
#[derive(Debug, PartialEq, Eq)]
pub enum PullError {
    /// No connection, or it broke (`connect`).
    Connect(String),
    /// 401/403: the key is wrong or was deleted (`auth`).
    Auth(u16),
    /// Any other status that is not 200 (`http`).
    Status(u16),
    /// The answer is not a decision stream (`garbage`).
    Garbage(String),
}

impl PullError {
    pub fn kind(&self) -> &'static str {
        match self {
            PullError::Connect(_) => "connect",
            PullError::Auth(_) => "auth",
            PullError::Status(_) => "http",
            PullError::Garbage(_) => "garbage",
        }
    }
}

impl std::fmt::Display for PullError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PullError::Connect(e) => write!(f, "cannot reach the LAPI: {e}"),
            PullError::Auth(code) => write!(
                f,
                "the LAPI refuses the API key (HTTP {code}): `cscli bouncers add` makes one"
            ),
            PullError::Status(code) => write!(f, "the LAPI answered HTTP {code}"),
            PullError::Garbage(e) => write!(f, "the LAPI's answer: {e}"),
        }
    }
}

/// Reads the API key, refusing a file that others than root can read or write, as ssh
/// refuses such a private key.
pub fn read_key(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("api_key_file {shown}: {e}"))?;
    if meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "api_key_file {shown} is owned by uid {} with mode {:o}: it must be root's and \
             readable by root only (chown root {shown}; chmod 600 {shown})",
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("api_key_file {shown}: {e}"))?;
    let key = text.trim();
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(format!(
            "api_key_file {shown} must hold the key alone (`cscli bouncers add NAME -o raw`)"
        ));
    }
    Ok(key.to_string())
}

pub struct Lapi {
    agent: ureq::Agent,
    url: String,
    key: String,
    scopes: String,
}

impl Lapi {
    pub fn new(config: &Crowdsec, key: String) -> Lapi {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .user_agent(concat!("mirror-xdp/", env!("CARGO_PKG_VERSION")))
            // A LAPI behind a private CA is trusted once the CA is in the system's store.
            .tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::PlatformVerifier)
                    .build(),
            )
            .build()
            .into();
        let scopes: Vec<&str> = config.scopes.iter().map(|s: &Scope| s.name()).collect();
        Lapi {
            agent,
            url: config.url.clone(),
            key,
            scopes: scopes.join(","),
        }
    }

    /// The stream's answer: everything in force (`startup`), or what changed since this
    /// key's last pull.
    pub fn pull(&self, startup: bool) -> Result<Vec<u8>, PullError> {
        let url = format!(
            "{}/v1/decisions/stream?startup={startup}&scopes={}",
            self.url, self.scopes
        );
        let mut response = self
            .agent
            .get(&url)
            .header("X-Api-Key", &self.key)
            .call()
            .map_err(|e| PullError::Connect(e.to_string()))?;
        match response.status().as_u16() {
            200 => {}
            code @ (401 | 403) => return Err(PullError::Auth(code)),
            code => return Err(PullError::Status(code)),
        }
        response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| PullError::Connect(format!("reading the answer: {e}")))
    }
}
