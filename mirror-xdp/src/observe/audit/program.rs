//! The program an interface runs, opened through its pinned XDP link, and test runs on it
//! (BPF_PROG_TEST_RUN). The link names the program in force, whichever binary loaded it,
//! so the audit judges what actually guards the interface.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use aya::programs::{
    ProgramError, TestRun, TestRunOptions, Xdp, links::FdLink, links::PinnedLink, loaded_programs,
};
use aya_obj::programs::XdpAttachType;

use crate::observe::testrun::{XDP_DROP, XDP_PASS, XDP_TX};

#[derive(Debug, thiserror::Error)]
pub enum ProgramOpenError {
    #[error("cannot open the pinned XDP link {path}: {message}")]
    Link { path: PathBuf, message: String },
    #[error("program {id} behind {path} is not loaded any more")]
    Gone { id: u32, path: PathBuf },
    #[error("cannot open program {id}: {source}")]
    Program { id: u32, source: ProgramError },
}

/// What the program did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pass,
    Drop,
    /// Sent back out (a SYN cookie answer): the frame itself reaches no socket.
    Tx,
    Other(u32),
}

impl Action {
    fn from_code(code: u32) -> Action {
        match code {
            XDP_PASS => Action::Pass,
            XDP_DROP => Action::Drop,
            XDP_TX => Action::Tx,
            other => Action::Other(other),
        }
    }

    /// Whether the frame goes on to the host's stack.
    pub fn passes(self) -> bool {
        self == Action::Pass
    }

    pub fn name(self) -> Cow<'static, str> {
        match self {
            Action::Pass => "pass".into(),
            Action::Drop => "drop".into(),
            Action::Tx => "tx".into(),
            Action::Other(code) => format!("action {code}").into(),
        }
    }
}

/// The XDP program behind a pinned link.
pub struct AttachedProgram {
    xdp: Xdp,
    pub id: u32,
}

impl AttachedProgram {
    pub fn open(link_pin: &Path) -> Result<AttachedProgram, ProgramOpenError> {
        let link_error = |message: String| ProgramOpenError::Link {
            path: link_pin.to_path_buf(),
            message,
        };
        // `FdLink::from` keeps the pin; dropping the handle leaves the link in place.
        let link =
            FdLink::from(PinnedLink::from_pin(link_pin).map_err(|e| link_error(e.to_string()))?);
        let id = link
            .info()
            .map_err(|e| link_error(e.to_string()))?
            .program_id();
        let info = loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == id)
            .ok_or_else(|| ProgramOpenError::Gone {
                id,
                path: link_pin.to_path_buf(),
            })?;
        let name = mirror_xdp_common::program_name::XDP;
        let xdp = Xdp::from_program_info(info, name.into(), XdpAttachType::Interface)
            .map_err(|source| ProgramOpenError::Program { id, source })?;
        Ok(AttachedProgram { xdp, id })
    }

    /// Runs the program once on `frame`.
    pub fn run(&self, frame: &[u8]) -> Result<Action, crate::observe::testrun::TestRunError> {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        Ok(Action::from_code(self.xdp.test_run(opts)?.return_value))
    }
}
