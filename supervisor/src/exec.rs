//! `traitor exec FILE.js` (being written).

use crate::config::ExecArgs;

pub fn main(_args: ExecArgs) -> std::process::ExitCode {
    std::process::ExitCode::FAILURE
}
