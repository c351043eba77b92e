//! The notification service, on port 8084 by default.

fn main() -> std::process::ExitCode {
    platform::server::main(&[notification::SERVICE])
}
