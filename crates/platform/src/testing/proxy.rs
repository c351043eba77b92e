//! A TCP proxy that a test puts between a service and Postgres, and cuts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use sqlx::postgres::PgConnectOptions;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP proxy in front of Postgres that a test can cut and restore, to simulate an
/// outage without stopping the shared server.
pub struct TcpProxy {
    address: SocketAddr,
    state: Arc<ProxyState>,
    accept_task: JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    cut: AtomicBool,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

impl TcpProxy {
    /// Listens on 127.0.0.1 on a free port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy port");
        let address = listener.local_addr().expect("proxy address");
        let state = Arc::new(ProxyState::default());
        let accept_task = tokio::spawn(accept_loop(listener, target, state.clone()));
        TcpProxy {
            address,
            state,
            accept_task,
        }
    }

    /// Returns the address clients connect to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Closes every open connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for connection in self.state.connections.lock().drain(..) {
            connection.abort();
        }
    }

    /// Forwards connections again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Connection options that reach `options`' database through this proxy.
    pub fn route(&self, options: &PgConnectOptions) -> PgConnectOptions {
        options
            .clone()
            .host(&self.address.ip().to_string())
            .port(self.address.port())
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, state: Arc<ProxyState>) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        if state.cut.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let task = tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
        let mut connections = state.connections.lock();
        connections.retain(|connection| !connection.is_finished());
        connections.push(task);
    }
}
