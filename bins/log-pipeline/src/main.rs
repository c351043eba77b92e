//! The log pipeline service, on port 8082 by default.

fn main() -> std::process::ExitCode {
    platform::server::main(&[logs::SERVICE])
}
