//! Seeing what the enforcer does: its counters ([`stats`]), the Prometheus exposition
//! ([`metrics`]), running frames through the program with BPF_PROG_TEST_RUN ([`testrun`])
//! and the bypass audit built on it ([`audit`]); what decides a connection's verdict
//! ([`explain`]); a line per judged packet ([`trace`]); wall-clock times of kernel
//! timestamps ([`clock`]).

pub mod audit;
pub mod clock;
pub mod explain;
pub mod memory;
pub mod metrics;
pub mod stats;
pub mod testrun;
pub mod trace;
