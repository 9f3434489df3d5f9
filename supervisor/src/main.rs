//! The `traitor` binary: parse the configuration, hand off.

use supervisor::config::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse_args();
    match cli.command {
        Some(Command::Exec(args)) => supervisor::exec::main(args),
        None => {
            eprintln!("the service is not built yet");
            std::process::ExitCode::FAILURE
        }
    }
}
