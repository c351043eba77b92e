//! The UGC service, on port 8091 by default.

fn main() -> std::process::ExitCode {
    platform::server::main(&[content::SERVICE])
}
