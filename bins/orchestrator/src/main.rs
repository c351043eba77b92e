//! The orchestrator service, on port 8090 by default.

/// mimalloc serves the many short-lived allocations of request handling with fewer
/// instructions than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    platform::server::main(&[orchestration::SERVICE])
}
