//! Reading what a guest left in its results folder and saying, per kernel, which steps ran,
//! passed, failed, and how long the VM took.

use std::path::Path;
use std::time::Duration;

use super::guest::{RESULTS_FILE, Step, log_name};
use super::qemu::Outcome;

/// Lines of a failed step's log shown on the host.
const LOG_TAIL: usize = 40;
/// Lines shown from each panic, which a long log (a daemon's, in the assertion) would push
/// out of the tail.
const PANIC_LINES: usize = 4;

pub struct Summary {
    pub label: String,
    pub passed: usize,
    pub failed: Vec<String>,
    pub wall: Duration,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Prints one line per step and the failures' log tails; a guest that ended early (did not
/// boot, was killed) fails with its console tail.
pub fn judge(label: &str, steps: &[Step], results: &Path, outcome: &Outcome) -> Summary {
    let text = std::fs::read_to_string(results.join(RESULTS_FILE)).unwrap_or_default();
    let mut ran: Vec<Option<(i32, u64)>> = vec![None; steps.len()];
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        if let [i, rc, ms] = fields[..]
            && let (Ok(i), Ok(rc), Ok(ms)) = (i.parse::<usize>(), rc.parse(), ms.parse())
            && i < ran.len()
        {
            ran[i] = Some((rc, ms));
        }
    }
    let mut summary = Summary {
        label: label.to_owned(),
        passed: 0,
        failed: Vec::new(),
        wall: outcome.wall,
    };
    println!("vm {label}: results");
    for (i, (step, result)) in steps.iter().zip(&ran).enumerate() {
        let log = std::fs::read_to_string(results.join(log_name(i))).unwrap_or_default();
        let verdict = match *result {
            None => "did not run".to_owned(),
            Some((0, _)) if !step.one_test || log.contains("test result: ok. 1 passed") => {
                "ok".to_owned()
            }
            Some((0, _)) => "FAILED (the filter ran no test)".to_owned(),
            Some((124, _)) => format!("TIMED OUT ({} s)", step.timeout_secs),
            Some((rc, _)) => format!("FAILED (exit {rc})"),
        };
        let secs = result.map_or(0.0, |(_, ms)| ms as f64 / 1000.0);
        println!("  {verdict:<12} {secs:>7.1} s  {}", step.label);
        if verdict == "ok" {
            summary.passed += 1;
        } else {
            summary.failed.push(step.label.clone());
            if result.is_some() {
                for line in panics(&log) {
                    println!("  ! {line}");
                }
                print_tail(&format!("{} (guest log)", step.label), &log, LOG_TAIL);
            }
        }
    }
    let all_ran = ran.iter().all(Option::is_some);
    if !outcome.clean || !all_ran {
        println!("vm {label}: {}", outcome.ended);
        print_tail(
            &format!("{label} console"),
            &outcome.console_tail.join("\n"),
            usize::MAX,
        );
        if outcome.clean && !all_ran {
            summary
                .failed
                .push("the guest powered off before its last step".into());
        } else if !outcome.clean {
            summary.failed.push(outcome.ended.clone());
        }
    }
    println!(
        "vm {label}: {} passed, {} failed, VM wall time {}",
        summary.passed,
        summary.failed.len(),
        minutes(outcome.wall)
    );
    summary
}

pub fn minutes(d: Duration) -> String {
    format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
}

/// The first lines of each panic in a test's log.
fn panics(log: &str) -> Vec<&str> {
    let lines: Vec<&str> = log.lines().collect();
    let mut shown = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("panicked at") {
            shown.extend(lines.iter().skip(i).take(PANIC_LINES));
        }
    }
    shown
}

fn print_tail(what: &str, text: &str, lines: usize) {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    println!("  --- last lines of {what} ---");
    for line in &all[start..] {
        println!("  | {line}");
    }
    println!("  ---");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(label: &str) -> Step {
        Step::for_test(label, false)
    }

    fn outcome(clean: bool) -> Outcome {
        Outcome {
            wall: Duration::from_secs(5),
            ended: "qemu exited".into(),
            clean,
            console_tail: vec!["mx-vm: init: cannot mount the host root over 9p".into()],
        }
    }

    #[test]
    fn panics_are_shown_from_their_first_line() {
        let log = "running 1 test\nthread 'x' panicked at tests/a.rs:9:5:\nthe port stopped\nlog 1\nlog 2\nlog 3\n";
        assert_eq!(
            panics(log),
            [
                "thread 'x' panicked at tests/a.rs:9:5:",
                "the port stopped",
                "log 1",
                "log 2"
            ]
        );
        assert!(panics("test result: ok. 1 passed").is_empty());
    }

    #[test]
    fn a_guest_that_ran_nothing_fails_every_step_and_itself() {
        let dir = std::env::temp_dir().join(format!("mx-vm-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let steps = [step("a::one")];
        let summary = judge("t", &steps, &dir, &outcome(true));
        assert!(!summary.ok());
        assert_eq!(summary.failed.len(), 2, "{:?}", summary.failed);

        // A step that exits 0 passes only if its log shows exactly one test passed.
        std::fs::write(dir.join(RESULTS_FILE), "0\t0\t100\n").unwrap();
        std::fs::write(dir.join(log_name(0)), "test result: ok. 0 passed;").unwrap();
        assert!(!judge("t", &steps, &dir, &outcome(true)).ok());
        std::fs::write(dir.join(log_name(0)), "test result: ok. 1 passed;").unwrap();
        assert!(judge("t", &steps, &dir, &outcome(true)).ok());
        // A killed qemu fails the run even when every step passed.
        assert!(!judge("t", &steps, &dir, &outcome(false)).ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
