//! The messaging service, on port 8092 by default.

fn main() -> std::process::ExitCode {
    platform::server::main(&[messaging::SERVICE])
}
