//! The audit's result: per interface, per class, the frames whose verdict differs from the
//! policy's intent; the offload warnings; and its text and JSON forms.

use std::fmt::Write as _;

use serde::Serialize;

use super::corpus::Class;
use super::targets::Targets;
use crate::kernel::nic::Offloads;
use crate::state::PolicyRecord;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub policy: PolicyRecord,
    pub mode: String,
    /// The ports and sources the frames were aimed at.
    pub targets: Targets,
    pub interfaces: Vec<InterfaceAudit>,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct InterfaceAudit {
    pub name: String,
    pub xdp_mode: String,
    pub prog_id: u32,
    pub classes: Vec<ClassReport>,
    /// `None` when the interface's offloads could not be read (a warning says why).
    pub offloads: Option<Offloads>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassReport {
    pub class: Class,
    pub frames: usize,
    pub findings: Vec<Finding>,
}

/// A frame whose verdict is not the one the policy intends.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub frame: String,
    /// "drop" or "pass".
    pub intended: &'static str,
    /// The policy's words for the intended verdict.
    pub why: &'static str,
    /// What the program did: "pass", "drop", "tx".
    pub verdict: String,
}

impl Report {
    pub fn findings(&self) -> usize {
        self.interfaces
            .iter()
            .flat_map(|i| &i.classes)
            .map(|c| c.findings.len())
            .sum()
    }

    pub fn json(&self) -> serde_json::Value {
        let mut doc = serde_json::to_value(self).expect("a report always serialises");
        doc["findings"] = self.findings().into();
        doc
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "policy {} (generation {}, {} mode)",
            self.policy.path.display(),
            self.policy.generation,
            self.mode
        );
        let _ = writeln!(out, "aimed at: {}", self.aims_text());
        for iface in &self.interfaces {
            let frames: usize = iface.classes.iter().map(|c| c.frames).sum();
            let _ = writeln!(
                out,
                "\n{} ({} mode, program {}): {frames} frames",
                iface.name, iface.xdp_mode, iface.prog_id
            );
            let _ = writeln!(out, "{:<26} {:>6}  RESULT", "CLASS", "FRAMES");
            for class in &iface.classes {
                let result = match (class.frames, class.findings.len()) {
                    (0, _) => "not built for this policy".to_string(),
                    (_, 0) => "ok".to_string(),
                    (_, 1) => "1 finding".to_string(),
                    (_, n) => format!("{n} findings"),
                };
                let _ = writeln!(
                    out,
                    "{:<26} {:>6}  {result}",
                    class.class.name(),
                    class.frames
                );
            }
            let findings: Vec<_> = iface
                .classes
                .iter()
                .flat_map(|c| c.findings.iter().map(move |f| (c.class, f)))
                .collect();
            if !findings.is_empty() {
                let _ = writeln!(out, "\nfindings on {}:", iface.name);
                for (class, f) in findings {
                    let _ = writeln!(
                        out,
                        "  {}: {}: the program says {}, the policy says {} ({})",
                        class.name(),
                        f.frame,
                        f.verdict,
                        f.intended,
                        f.why
                    );
                }
            }
        }
        let warnings: Vec<_> = self.interfaces.iter().flat_map(|i| &i.warnings).collect();
        if !warnings.is_empty() {
            let _ = writeln!(out, "\nwarnings:");
            for w in warnings {
                let _ = writeln!(out, "  {w}");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\nnotes:");
            for n in &self.notes {
                let _ = writeln!(out, "  {n}");
            }
        }
        let n = self.findings();
        let _ = writeln!(
            out,
            "\n{}",
            match n {
                0 => "no findings".to_string(),
                1 => "1 finding".to_string(),
                n => format!("{n} findings"),
            }
        );
        out
    }

    fn aims_text(&self) -> String {
        let t = &self.targets;
        let mut parts = Vec::new();
        if let Some(p) = t.closed_port {
            parts.push(format!("closed port tcp/{p}"));
        }
        if let Some(p) = t.open_port {
            parts.push(format!("open port tcp/{p}"));
        }
        if let Some(p) = t.restricted_port {
            parts.push(format!("from-restricted port tcp/{p}"));
        }
        for denied in [
            t.denied_v4.map(|a| a.to_string()),
            t.denied_v6.map(|a| a.to_string()),
        ]
        .into_iter()
        .flatten()
        {
            parts.push(format!("denied source {denied}"));
        }
        parts.push(format!(
            "unnamed sources {} and {}",
            t.outsider_v4, t.outsider_v6
        ));
        parts.join(", ")
    }
}
