//! The HTTP ceiling of the benchmark suite: axum on the services' runtime, doing no work.
//!
//! Every POST, PUT or PATCH, whatever its path, reads the whole body and deserializes it into
//! `serde::de::IgnoredAny` (each line on its own for `application/x-ndjson`). It then
//! returns 202 with no body, or 400 for invalid JSON. Every GET returns a small fixed
//! JSON object. `IgnoredAny` checks the full JSON syntax without building values, so one
//! route serves every body the services take, and what a service spends beyond this
//! server (building values, validation, middleware, the store) shows up in its ratio.
//!
//! A GET endpoint that returns a long list also pays for writing it, so the harness sets
//! `BENCH_CEILING_GET_BYTES` to the size of the endpoint's body: GETs then return a JSON
//! body of that many bytes, built once at startup.
//!
//! Usage: `bench-ceiling [ADDRESS]`, default `127.0.0.1:8099`.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use serde::de::IgnoredAny;

/// The services' allocator, so that the comparison measures their work, not the allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_ADDRESS: &str = "127.0.0.1:8099";
/// Maximum body size in bytes, the same as the services' default `PERIPHERALS_MAX_BODY`.
const MAX_BODY: usize = 1024 * 1024;

fn main() -> ExitCode {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
    let address: SocketAddr = match address.parse() {
        Ok(address) => address,
        Err(error) => {
            eprintln!(
                "error: invalid listen address {address:?}: {error}; expected IP:PORT such as {DEFAULT_ADDRESS}"
            );
            return ExitCode::FAILURE;
        }
    };

    // The same runtime as the services build: multi-threaded, one worker per core.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(address)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: serving on {address} failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(address: SocketAddr) -> std::io::Result<()> {
    let get_body = get_body_from_env();
    let fixed = move || {
        let body = get_body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    };
    let router = Router::new()
        .route("/", get(fixed.clone()).post(parse_body))
        .route(
            "/{*path}",
            get(fixed)
                .post(parse_body)
                .put(parse_body)
                .patch(parse_body),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY));
    let listener = tokio::net::TcpListener::bind(address).await?;
    axum::serve(listener, router).await
}

/// Builds the GET body: `BENCH_CEILING_GET_BYTES` bytes of JSON when set, else a small
/// fixed object.
fn get_body_from_env() -> Bytes {
    const SMALL: &str = r#"{"status":"ok","items":[]}"#;
    let size = std::env::var("BENCH_CEILING_GET_BYTES")
        .ok()
        .and_then(|text| text.parse::<usize>().ok());
    match size {
        // `{"pad":""}` is 10 bytes; the padding makes up the rest.
        Some(size) if size > 10 => {
            Bytes::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(size - 10)))
        }
        _ => Bytes::from_static(SMALL.as_bytes()),
    }
}

async fn parse_body(headers: HeaderMap, body: Bytes) -> StatusCode {
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-ndjson"));
    let parsed = if ndjson {
        body.split(|byte| *byte == b'\n')
            .filter(|line| !line.trim_ascii().is_empty())
            .all(|line| serde_json::from_slice::<IgnoredAny>(line).is_ok())
    } else {
        serde_json::from_slice::<IgnoredAny>(&body).is_ok()
    };
    if parsed {
        StatusCode::ACCEPTED
    } else {
        StatusCode::BAD_REQUEST
    }
}
