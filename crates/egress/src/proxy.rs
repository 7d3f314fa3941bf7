//! A forward HTTP proxy on 127.0.0.1 for one job, so yt-dlp and the ffmpeg it spawns
//! (`--proxy`, `http_proxy`) make every connection through [`EgressGuard::connect`]:
//! redirects, media and subtitle URLs and HLS segments are all checked, not just the
//! URL the user submitted.
//!
//! - `CONNECT host:port` (https): connect through the guard, answer 200, splice bytes.
//! - `GET http://host:port/path` (plain http): connect through the guard and forward
//!   the request in origin-form over that connection; bodies are streamed.
//!
//! Each request is checked on its own, also on a kept-alive client connection. A
//! refusal answers 403 and is recorded on the [`ProxyHandle`], so the job can fail
//! with the reason. The shape follows hyper's own HTTP proxy example: CONNECT answers
//! first, and `hyper::upgrade::on` hands over the client connection afterwards.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{Scheme, Uri};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use mediapro_core::{site_profile::UpstreamProxy, validate::Blocked};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::guard::{EgressError, EgressGuard};

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Headers that describe one hop, not the message; never forwarded.
const HOP_BY_HOP: [&str; 7] =
    ["proxy-connection", "proxy-authorization", "connection", "keep-alive", "te", "trailer", "upgrade"];

/// A connection the proxy refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The host as the client asked for it (a name or an IP literal).
    pub host: String,
    pub port: u16,
    pub blocked: Blocked,
}

impl Refusal {
    /// `blocked: 10.0.0.5 is a private address`
    pub fn reason(&self) -> String {
        format!("blocked: {}", self.blocked)
    }
}

/// A running proxy for one job. Dropping it stops the listener and every connection
/// (tunnels and forwarded downloads included).
#[derive(Debug)]
pub struct ProxyHandle {
    addr: SocketAddr,
    refusals: Arc<Mutex<Vec<Refusal>>>,
    connected: watch::Receiver<bool>,
    _stop: watch::Sender<()>,
}

impl ProxyHandle {
    /// `http://127.0.0.1:PORT`, for yt-dlp's `--proxy`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every refusal so far, oldest first.
    pub fn refusals(&self) -> Vec<Refusal> {
        lock(&self.refusals).clone()
    }

    /// The first refusal as a task error: `blocked: 127.0.0.2 is a loopback address`.
    pub fn first_refusal_reason(&self) -> Option<String> {
        lock(&self.refusals).first().map(Refusal::reason)
    }

    /// Resolves `true` once the proxy made its first allowed connection (the
    /// job's first contact with a site: the site gate's start, see
    /// `crates/worker/src/jobs/site.rs`), `false` if the proxy stopped first.
    pub fn first_connection(&self) -> impl Future<Output = bool> + Send + 'static {
        let mut connected = self.connected.clone();
        async move { connected.wait_for(|c| *c).await.is_ok() }
    }
}

impl EgressGuard {
    /// Start a proxy for one job on 127.0.0.1 (a free port); it lives until the handle
    /// is dropped.
    pub async fn start_proxy(&self) -> io::Result<ProxyHandle> {
        self.start_proxy_via(None).await
    }

    /// [`EgressGuard::start_proxy`], reaching sites through an upstream HTTP proxy (a
    /// site profile's `upstream_proxy`): every target is still checked against the
    /// policy first (and refused the same way), then the connection to the upstream
    /// proxy goes through the guard too, and the request (or a `CONNECT`) is sent
    /// to it. yt-dlp never talks to the upstream proxy itself.
    pub async fn start_proxy_via(&self, upstream: Option<&UpstreamProxy>) -> io::Result<ProxyHandle> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop) = watch::channel(());
        let upstream = upstream.map(|u| (u.host().to_owned(), u.port()));
        let (connected_tx, connected) = watch::channel(false);
        let proxy = Arc::new(Proxy {
            guard: self.clone(),
            refusals: Arc::default(),
            connected: connected_tx,
            stop,
            upstream,
        });
        let refusals = proxy.refusals.clone();
        spawn_until(&proxy.stop.clone(), accept_loop(listener, proxy));
        Ok(ProxyHandle { addr, refusals, connected, _stop: stop_tx })
    }
}

struct Proxy {
    guard: EgressGuard,
    refusals: Arc<Mutex<Vec<Refusal>>>,
    /// Set once a connection was allowed.
    connected: watch::Sender<bool>,
    /// Never receives a value; `changed()` fails once the handle's sender is dropped.
    stop: watch::Receiver<()>,
    /// `(host, port)` of the upstream HTTP proxy every checked connection goes through.
    upstream: Option<(String, u16)>,
}

async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %err, "egress proxy: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let stop = proxy.stop.clone();
        let proxy = proxy.clone();
        spawn_until(&stop, async move {
            let service = service_fn(move |req| proxy.clone().handle(req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "egress proxy: client connection failed");
            }
        });
    }
}

impl Proxy {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
        Ok(if req.method() == Method::CONNECT { self.tunnel(req).await } else { self.forward(req).await })
    }

    /// `CONNECT host:port`: connect through the guard, answer 200, then splice bytes.
    async fn tunnel(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let target = req.uri().authority().and_then(|a| Some((a.host().to_owned(), a.port_u16()?)));
        let Some((host, port)) = target else {
            return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port".into());
        };
        let mut upstream = match self.connect(&host, port).await {
            Ok(stream) => stream,
            Err(response) => return response,
        };
        spawn_until(&self.stop, async move {
            // Resolves once hyper has sent the 200 and handed the connection over.
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut upstream).await;
                }
                Err(err) => tracing::debug!(error = %err, "egress proxy: CONNECT upgrade failed"),
            }
        });
        Response::new(Full::default().map_err(|never| match never {}).boxed())
    }

    /// `GET http://host:port/path`: connect through the guard and forward the request.
    async fn forward(&self, mut req: Request<Incoming>) -> Response<ProxyBody> {
        let uri = req.uri().clone();
        let authority = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) if *scheme == Scheme::HTTP => authority.clone(),
            _ => {
                let msg = "only absolute http:// URLs and CONNECT are proxied";
                return text(StatusCode::BAD_REQUEST, msg.into());
            }
        };
        let port = authority.port_u16().unwrap_or(80);
        let upstream = match self.connect(authority.host(), port).await {
            Ok(stream) => stream,
            Err(response) => return response,
        };

        // Origin-form for the server (through an upstream proxy too: the stream is a
        // tunnel to the checked address); Host from the request target (RFC 9112 §3.2.2).
        *req.uri_mut() =
            uri.path_and_query().map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
        strip_hop_by_hop(req.headers_mut());
        let host = match authority.port() {
            Some(port) => format!("{}:{port}", authority.host()),
            None => authority.host().to_owned(),
        };
        if let Ok(host) = HeaderValue::from_str(&host) {
            req.headers_mut().insert(header::HOST, host);
        }

        let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
            Ok(pair) => pair,
            Err(err) => return text(StatusCode::BAD_GATEWAY, format!("upstream handshake failed: {err}")),
        };
        spawn_until(&self.stop, async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "egress proxy: upstream connection failed");
            }
        });
        match sender.send_request(req).await {
            Ok(mut response) => {
                strip_hop_by_hop(response.headers_mut());
                response.map(BodyExt::boxed)
            }
            Err(err) => text(StatusCode::BAD_GATEWAY, format!("upstream request failed: {err}")),
        }
    }

    /// [`EgressGuard::connect`], with a refusal recorded and turned into a 403. With
    /// an upstream proxy: the target is checked, the upstream proxy is connected to
    /// through the guard as well, and asked (`CONNECT`) for a tunnel to the very
    /// address that was checked, not the name (which it could resolve elsewhere);
    /// the stream is that tunnel.
    async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, Response<ProxyBody>> {
        let result = match &self.upstream {
            None => self.guard.connect(host, port).await,
            Some((proxy_host, proxy_port)) => match self.guard.check(host, port).await {
                Ok(target) => match self.guard.connect(proxy_host, *proxy_port).await {
                    Ok((mut stream, addr)) => match upstream_connect(&mut stream, target).await {
                        Ok(()) => Ok((stream, addr)),
                        Err(err) => {
                            return Err(text(StatusCode::BAD_GATEWAY, format!("upstream proxy: {err}")));
                        }
                    },
                    Err(err) => Err(err),
                },
                Err(err) => Err(err),
            },
        };
        match result {
            Ok((stream, _)) => {
                self.connected.send_if_modified(|c| !std::mem::replace(c, true));
                Ok(stream)
            }
            Err(EgressError::Blocked(blocked)) => {
                let refusal = Refusal { host: host.to_owned(), port, blocked };
                let reason = refusal.reason();
                lock(&self.refusals).push(refusal);
                Err(text(StatusCode::FORBIDDEN, reason))
            }
            Err(err) => Err(text(StatusCode::BAD_GATEWAY, err.to_string())),
        }
    }
}

/// Asks the upstream proxy on `stream` for a tunnel to `target` (an address the
/// policy allowed) and reads its answer's head; `Ok` once it answered 2xx (the
/// stream is then the tunnel).
async fn upstream_connect(stream: &mut TcpStream, target: SocketAddr) -> io::Result<()> {
    let authority = target.to_string();
    let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    // Byte by byte up to the blank line, so nothing of the tunnel is read here.
    let mut head = Vec::with_capacity(256);
    let read = async {
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 16 * 1024 {
                return Err(io::Error::other("answer head too long"));
            }
            let byte = stream.read_u8().await?;
            head.push(byte);
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer to CONNECT"))??;
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if code.starts_with('2') {
        Ok(())
    } else {
        Err(io::Error::other(format!("CONNECT {authority} answered '{status_line}'")))
    }
}

/// Remove hop-by-hop headers, including any the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// An answer of the proxy itself (not of the upstream server), marked with
/// `Proxy-Status` (RFC 9209) so a client can tell the two apart.
fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response.headers_mut().insert(PROXY_STATUS, HeaderValue::from_static(PROXY_NAME));
    response
}

/// The header that marks the proxy's own answers, and the proxy's name in it.
pub const PROXY_STATUS: HeaderName = HeaderName::from_static("proxy-status");
const PROXY_NAME: &str = "mediapro-egress";

/// Spawn `task`, cancelled when the proxy's handle is dropped.
fn spawn_until(stop: &watch::Receiver<()>, task: impl Future<Output = ()> + Send + 'static) {
    let mut stop = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = task => {}
            _ = stop.changed() => {}
        }
    });
}

fn lock(refusals: &Mutex<Vec<Refusal>>) -> MutexGuard<'_, Vec<Refusal>> {
    refusals.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
