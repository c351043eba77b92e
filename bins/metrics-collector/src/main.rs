//! The Metrics Collector service, on port 8081 by default.

fn main() -> std::process::ExitCode {
    platform::server::main(&[metrics::SERVICE])
}
