//! [`EgressGuard::connect`]: resolve, check every address, connect to a checked one.
//! Every outbound connection of the service goes through this one function.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mediapro_core::{
    metrics::Metrics,
    validate::{Blocked, EgressPolicy},
};
use tokio::net::TcpStream;

use crate::resolve::{Resolve, SystemResolver};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an outbound connection was not made.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The policy refused an address the host resolved to (or the literal address).
    #[error("blocked: {0}")]
    Blocked(#[from] Blocked),
    #[error("could not resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("{host} resolved to no address")]
    NoAddress { host: String },
    #[error("could not connect to {host}:{port}: {source}")]
    Connect { host: String, port: u16, source: io::Error },
}

/// The egress policy plus the resolver it judges names with. Cheap to clone.
#[derive(Clone)]
pub struct EgressGuard {
    policy: Arc<EgressPolicy>,
    resolver: Arc<dyn Resolve>,
    /// Refusals are counted here (`mediapro_egress_refusals_total`).
    metrics: Metrics,
}

impl std::fmt::Debug for EgressGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressGuard").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl EgressGuard {
    /// A guard that resolves names with the system resolver.
    pub fn new(policy: EgressPolicy) -> Self {
        Self::with_resolver(policy, Arc::new(SystemResolver))
    }

    /// A guard with its own resolver (tests inject fixed or rebinding answers).
    pub fn with_resolver(policy: EgressPolicy, resolver: Arc<dyn Resolve>) -> Self {
        Self { policy: Arc::new(policy), resolver, metrics: Metrics::off() }
    }

    /// The same guard, counting its refusals in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// Resolve `host` once, refuse if ANY of its addresses is not allowed, then connect
    /// to the checked addresses in order. There is no second lookup, so a name that
    /// changes its answer (DNS rebinding) cannot swap in an unchecked address. An IP
    /// literal (`10.0.0.1`, `[::1]` or `::1`) is checked as is, without DNS.
    ///
    /// Every refusal is logged as `egress refused` and counted.
    pub async fn connect(&self, host: &str, port: u16) -> Result<(TcpStream, SocketAddr), EgressError> {
        let addrs = self.checked_addresses(host, port).await.inspect_err(|err| {
            if let EgressError::Blocked(blocked) = err {
                tracing::warn!(host, address = %blocked.ip, reason = %blocked.reason, "egress refused");
                self.metrics.egress_refused(blocked.reason.label());
            }
        })?;
        let mut last_error = None;
        for addr in addrs {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok((stream, addr)),
                Ok(Err(err)) => last_error = Some(err),
                Err(_) => last_error = Some(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
            }
        }
        let source = last_error.unwrap_or_else(|| io::Error::other("no address to connect to"));
        Err(EgressError::Connect { host: host.to_owned(), port, source })
    }

    /// The address `host` may be reached at (the same check and logging as
    /// [`EgressGuard::connect`], without connecting): for a target an upstream proxy
    /// connects to, which is then asked for exactly this address.
    pub async fn check(&self, host: &str, port: u16) -> Result<SocketAddr, EgressError> {
        let addrs = self.checked_addresses(host, port).await.inspect_err(|err| {
            if let EgressError::Blocked(blocked) = err {
                tracing::warn!(host, address = %blocked.ip, reason = %blocked.reason, "egress refused");
                self.metrics.egress_refused(blocked.reason.label());
            }
        })?;
        addrs.into_iter().next().ok_or_else(|| EgressError::NoAddress { host: host.to_owned() })
    }

    /// The addresses `host` stands for, all of them allowed by the policy.
    async fn checked_addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let addrs = match literal.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => self
                .resolver
                .resolve(host, port)
                .await
                .map_err(|source| EgressError::Resolve { host: host.to_owned(), source })?,
        };
        if addrs.is_empty() {
            return Err(EgressError::NoAddress { host: host.to_owned() });
        }
        for addr in &addrs {
            self.policy.check(addr.ip())?;
        }
        Ok(addrs)
    }
}
