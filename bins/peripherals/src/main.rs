//! All seven services in one process on their configured addresses, for local use.
//! One SIGINT or SIGTERM stops all of them.

/// mimalloc serves the many short-lived allocations of request handling with fewer
/// instructions than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
