//! The `peripherals` binary as a process: it serves all seven services, stops on SIGTERM
//! with exit code 0, and refuses to start on bad configuration with a clear message.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Address variables of the seven services.
const ADDRESS_VARIABLES: [&str; 7] = [
    "METRICS_HTTP_ADDR",
    "LOG_PIPELINE_HTTP_ADDR",
    "UGC_HTTP_ADDR",
    "NOTIFY_HTTP_ADDR",
    "ORCHESTRATION_HTTP_ADDR",
    "UGC_SERVICE_HTTP_ADDR",
    "MESSAGING_HTTP_ADDR",
];

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_peripherals"));
    command
        .env_remove("PERIPHERALS_STORE")
        .env_remove("PERIPHERALS_CONFIG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Sends `GET path` and returns the status line, or `None` when nothing listens.
fn get_status(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.lines().next().map(str::to_string)
}

fn wait_until_healthy(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if get_status(port, "/healthz").is_some_and(|line| line.contains("200")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    text
}

#[test]
fn serves_all_seven_and_stops_on_sigterm() {
    let ports: Vec<u16> = ADDRESS_VARIABLES.iter().map(|_| free_port()).collect();
    let mut command = command();
    for (variable, port) in ADDRESS_VARIABLES.iter().zip(&ports) {
        command.env(variable, format!("127.0.0.1:{port}"));
    }
    let mut child = command.spawn().expect("start peripherals");

    for (variable, port) in ADDRESS_VARIABLES.iter().zip(&ports) {
        assert!(
            wait_until_healthy(*port),
            "{variable} on {port} never became healthy"
        );
        let ready = get_status(*port, "/readyz").unwrap_or_default();
        assert!(ready.contains("200"), "{variable}: readyz said {ready}");
    }

    terminate(&child);
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    let log = stderr_of(&mut child);
    assert!(status.success(), "exit status {status:?}; log:\n{log}");
    assert!(log.contains("shutdown complete"), "log:\n{log}");
    for port in ports {
        assert!(
            get_status(port, "/healthz").is_none(),
            "port {port} still serves"
        );
    }
}

#[test]
fn bad_setting_stops_startup_naming_variable() {
    let mut command = command();
    for variable in ADDRESS_VARIABLES {
        command.env(variable, "127.0.0.1:0");
    }
    command.env("MESSAGING_VISIBILITY_TIMEOUT", "soon");
    let mut child = command.spawn().expect("start peripherals");

    let status = wait_with_timeout(&mut child, Duration::from_secs(20));
    let log = stderr_of(&mut child);
    assert!(!status.success(), "must not start; log:\n{log}");
    assert!(log.contains("MESSAGING_VISIBILITY_TIMEOUT"), "log:\n{log}");
    assert!(log.contains("soon"), "log:\n{log}");
}

#[test]
fn postgres_store_without_url_stops_startup() {
    let mut command = command();
    for variable in ADDRESS_VARIABLES {
        command.env(variable, "127.0.0.1:0");
    }
    command
        .env("PERIPHERALS_STORE", "postgres")
        .env_remove("DATABASE_URL");
    let mut child = command.spawn().expect("start peripherals");

    let status = wait_with_timeout(&mut child, Duration::from_secs(20));
    let log = stderr_of(&mut child);
    assert!(!status.success(), "must not start; log:\n{log}");
    assert!(log.contains("DATABASE_URL"), "log:\n{log}");
}

#[test]
fn port_in_use_names_the_variable() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let mut command = command();
    for variable in ADDRESS_VARIABLES {
        command.env(variable, "127.0.0.1:0");
    }
    command.env("NOTIFY_HTTP_ADDR", format!("127.0.0.1:{port}"));
    let mut child = command.spawn().expect("start peripherals");

    let status = wait_with_timeout(&mut child, Duration::from_secs(20));
    let log = stderr_of(&mut child);
    assert!(!status.success(), "must not start; log:\n{log}");
    assert!(log.contains("NOTIFY_HTTP_ADDR"), "log:\n{log}");
}

#[test]
fn serves_all_seven_on_postgres_and_stops() {
    use sqlx::ConnectOptions;

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let database = runtime.block_on(platform::testing::TestDatabase::create());
    let url = database.options.to_url_lossy().to_string();

    let ports: Vec<u16> = ADDRESS_VARIABLES.iter().map(|_| free_port()).collect();
    let mut command = command();
    for (variable, port) in ADDRESS_VARIABLES.iter().zip(&ports) {
        command.env(variable, format!("127.0.0.1:{port}"));
    }
    command
        .env("PERIPHERALS_STORE", "postgres")
        .env("DATABASE_URL", &url)
        .env("PERIPHERALS_DB_MAX_CONNECTIONS", "2");
    let mut child = command.spawn().expect("start peripherals");

    for (variable, port) in ADDRESS_VARIABLES.iter().zip(&ports) {
        assert!(
            wait_until_healthy(*port),
            "{variable} on {port} never became healthy"
        );
        let ready = get_status(*port, "/readyz").unwrap_or_default();
        assert!(ready.contains("200"), "{variable}: readyz said {ready}");
    }

    terminate(&child);
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    let log = stderr_of(&mut child);
    assert!(status.success(), "exit status {status:?}; log:\n{log}");
    assert!(log.contains("store=\"postgres\""), "log:\n{log}");
}
