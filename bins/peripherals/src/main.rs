//! All seven services in one process on their configured addresses, for local use.
//! One SIGINT or SIGTERM stops all of them.

fn main() -> std::process::ExitCode {
    platform::server::main(&[
        metrics::SERVICE,
        logs::SERVICE,
        moderation::SERVICE,
        notification::SERVICE,
        orchestration::SERVICE,
        content::SERVICE,
        messaging::SERVICE,
    ])
}
