//! The orchestrator service, on port 8090 by default.

fn main() -> std::process::ExitCode {
    platform::server::main(&[orchestration::SERVICE])
}
