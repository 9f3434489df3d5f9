//! `traitor-worker`: started by the traitor supervisor with its socket on fd 3. Only
//! parses the command line and hands off to the library.

fn main() {
    let code = if std::env::args().nth(1).as_deref() == Some("--sandbox-selftest") {
        worker::sandbox::selftest()
    } else {
        worker::launch::run_worker()
    };
    // Exit without unwinding the runtime: `Shutdown` means "now".
    std::process::exit(code);
}
