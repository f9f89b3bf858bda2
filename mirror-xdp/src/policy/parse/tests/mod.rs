//! Tests of policy parsing: helpers shared by the test modules, one module per part of the
//! policy.

mod examples;
mod rules;
mod set_files;
mod settings;
mod syntax;

use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::{Policy, PolicyError};
use crate::policy::PortRange;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| net(s)).collect()
}

fn range(lo: u16, hi: u16) -> PortRange {
    PortRange { lo, hi }
}

fn one(port: u16) -> PortRange {
    range(port, port)
}

fn ok(text: &str) -> Policy {
    Policy::parse(text, Path::new("policy.toml")).unwrap_or_else(|e| panic!("{e}"))
}

/// The error as the user sees it: "policy.toml:line:col: message".
fn err(text: &str) -> String {
    match Policy::parse(text, Path::new("policy.toml")) {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(e) => e.to_string(),
    }
}

/// A folder with files in it; returns it and the path of "policy.toml" inside.
fn folder(files: &[(&str, &[u8])]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let policy = dir.path().join("policy.toml");
    (dir, policy)
}

fn load(files: &[(&str, &[u8])]) -> Result<Policy, PolicyError> {
    let (_dir, path) = folder(files);
    Policy::load(&path)
}
