//! Name resolution behind a trait, so tests can inject answers (a DNS-rebinding
//! resolver, for one) without touching real DNS.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

/// A boxed, sendable future (the trait below must be object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Turns a host name into socket addresses. The guard calls it once per connection
/// and connects only to the addresses it returned.
pub trait Resolve: Send + Sync + 'static {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;
}

/// The operating system's resolver (`getaddrinfo` via `tokio::net::lookup_host`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move {
            match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port))).await {
                Ok(addrs) => Ok(addrs?.collect()),
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "name lookup timed out")),
            }
        })
    }
}
