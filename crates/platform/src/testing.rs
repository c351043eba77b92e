//! Test support: an in-process HTTP client for routers, a fresh migrated Postgres
//! database per test, a TCP proxy that can cut a service off from Postgres, and a macro
//! that runs one suite against both stores.

mod client;
mod database;
mod proxy;

pub use client::{TestClient, TestRequest, TestResponse};
pub use database::TestDatabase;
pub use proxy::TcpProxy;

/// Generates, for each named async test function taking an app, one test against the
/// memory store and one against Postgres. The app type needs `async fn memory() -> Self`
/// and `async fn postgres() -> Self`.
///
/// ```ignore
/// platform::store_suite!(TestApp; creates_item, rejects_duplicate);
/// ```
#[macro_export]
macro_rules! store_suite {
    ($app:ty; $($name:ident),+ $(,)?) => {
        mod memory {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(<$app>::memory().await).await;
                }
            )+
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(<$app>::postgres().await).await;
                }
            )+
        }
    };
}
