//! The UGC Worker service, on port 8083 by default.

fn main() -> std::process::ExitCode {
    platform::server::main(&[moderation::SERVICE])
}
