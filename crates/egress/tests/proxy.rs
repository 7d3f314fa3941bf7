//! The egress proxy and guard against real sockets, loopback only: an "allowed"
//! origin on 127.0.0.1 and an "internal" origin on 127.0.0.2, with a policy that
//! allows only 127.0.0.1/32. The internal origin counts connections, so each test
//! can prove nothing ever reached it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mediapro_core::validate::parse_networks;
use mediapro_egress::{BoxFuture, EgressError, EgressGuard, EgressPolicy, Resolve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIG_LEN: usize = 20 * 1024 * 1024;

/// A tiny HTTP server that counts the connections it accepts and requests it serves.
/// Routes: `/big` (20 MB), `/to/<port>` (302 to `http://127.0.0.2:<port>/`), else a greeting.
struct Origin {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Origin {
    async fn start(ip: &str) -> Origin {
        let listener = TcpListener::bind((ip.parse::<IpAddr>().expect("ip"), 0)).await.expect("bind origin");
        let addr = listener.local_addr().expect("local addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (conns, reqs) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                conns.fetch_add(1, Ordering::SeqCst);
                let reqs = reqs.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    reqs.fetch_add(1, Ordering::SeqCst);
                    let path = req.uri().path().to_owned();
                    let host =
                        req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("").to_owned();
                    async move {
                        let response = if path == "/big" {
                            Response::new(Full::new(big_body()))
                        } else if let Some(port) = path.strip_prefix("/to/") {
                            Response::builder()
                                .status(StatusCode::FOUND)
                                .header("location", format!("http://127.0.0.2:{port}/"))
                                .body(Full::default())
                                .expect("redirect response")
                        } else {
                            Response::new(Full::new(Bytes::from(format!("hello from {addr}, host {host}"))))
                        };
                        Ok::<_, hyper::Error>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Origin { addr, connections, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// 20 MB with a pattern, so a dropped, doubled or reordered chunk shows.
fn big_body() -> Bytes {
    static BIG: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    BIG.get_or_init(|| Bytes::from((0..BIG_LEN).map(|i| (i % 251) as u8).collect::<Vec<u8>>())).clone()
}

fn only_127_0_0_1() -> EgressPolicy {
    EgressPolicy {
        allow_private_networks: false,
        allowed_networks: parse_networks("127.0.0.1/32").expect("network list"),
    }
}

fn client_via(proxy_url: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(proxy_url).expect("proxy url"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Send `head` on a fresh connection to the proxy and read everything until it closes
/// (or `until` appears).
async fn raw_exchange(stream: &mut TcpStream, head: &str, until: &str) -> String {
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("read timed out")
            .expect("read");
        seen.extend_from_slice(&buf[..n]);
        if n == 0 || String::from_utf8_lossy(&seen).contains(until) {
            return String::from_utf8_lossy(&seen).into_owned();
        }
    }
}

#[tokio::test]
async fn get_to_an_allowed_origin_is_forwarded_with_the_body_intact() {
    let allowed = Origin::start("127.0.0.1").await;
    let proxy = EgressGuard::new(only_127_0_0_1()).start_proxy().await.expect("proxy");
    let client = client_via(&proxy.url());

    let response = client.get(allowed.url("/hello")).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let body = response.text().await.expect("body");
    assert_eq!(body, format!("hello from {}, host {}", allowed.addr, allowed.addr));

    let big = client.get(allowed.url("/big")).send().await.expect("request").bytes().await.expect("body");
    assert_eq!(big.len(), BIG_LEN);
    assert!(big == big_body(), "20 MB body corrupted");
    assert!(proxy.refusals().is_empty());
}

#[tokio::test]
async fn get_to_an_internal_origin_is_refused_before_connecting() {
    let internal = Origin::start("127.0.0.2").await;
    let proxy = EgressGuard::new(only_127_0_0_1()).start_proxy().await.expect("proxy");

    let response = client_via(&proxy.url()).get(internal.url("/")).send().await.expect("request");
    assert_eq!(response.status(), 403);
    assert_eq!(response.text().await.expect("body"), "blocked: 127.0.0.2 is a loopback address");
    assert_eq!(internal.connections(), 0);
    assert_eq!(proxy.first_refusal_reason().as_deref(), Some("blocked: 127.0.0.2 is a loopback address"));
    let refusals = proxy.refusals();
    assert_eq!(refusals.len(), 1);
    assert_eq!((refusals[0].host.as_str(), refusals[0].port), ("127.0.0.2", internal.addr.port()));
}

#[tokio::test]
async fn a_redirect_to_an_internal_origin_is_refused() {
    let allowed = Origin::start("127.0.0.1").await;
    let internal = Origin::start("127.0.0.2").await;
    let proxy = EgressGuard::new(only_127_0_0_1()).start_proxy().await.expect("proxy");

    let url = allowed.url(&format!("/to/{}", internal.addr.port()));
    let response = client_via(&proxy.url()).get(url).send().await.expect("request");
    assert_eq!(response.status(), 403, "the followed redirect must be refused");
    assert_eq!(allowed.requests(), 1);
    assert_eq!(internal.connections(), 0);
    assert_eq!(proxy.first_refusal_reason().as_deref(), Some("blocked: 127.0.0.2 is a loopback address"));
}

#[tokio::test]
async fn connect_tunnels_to_allowed_origins_only() {
    let allowed = Origin::start("127.0.0.1").await;
    let internal = Origin::start("127.0.0.2").await;
    let proxy = EgressGuard::new(only_127_0_0_1()).start_proxy().await.expect("proxy");

    let mut refused = TcpStream::connect(proxy.addr()).await.expect("connect to proxy");
    let target = internal.addr;
    let answer = raw_exchange(
        &mut refused,
        &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        "blocked",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(internal.connections(), 0);

    let mut tunnel = TcpStream::connect(proxy.addr()).await.expect("connect to proxy");
    let target = allowed.addr;
    let answer = raw_exchange(
        &mut tunnel,
        &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        "\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Now speak plain HTTP to the origin through the tunnel.
    let answer =
        raw_exchange(&mut tunnel, "GET / HTTP/1.1\r\nHost: tunnel\r\nConnection: close\r\n\r\n", "\0").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(&format!("hello from {target}, host tunnel")), "{answer}");
}

#[tokio::test]
async fn every_request_on_a_kept_alive_connection_is_checked() {
    let allowed = Origin::start("127.0.0.1").await;
    let internal = Origin::start("127.0.0.2").await;
    let proxy = EgressGuard::new(only_127_0_0_1()).start_proxy().await.expect("proxy");

    let stream = TcpStream::connect(proxy.addr()).await.expect("connect to proxy");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    for (url, status) in [(allowed.url("/"), 200), (internal.url("/"), 403), (allowed.url("/"), 200)] {
        let request = Request::get(&url).body(Empty::<Bytes>::new()).expect("request");
        let response = sender.send_request(request).await.expect("response on the same connection");
        assert_eq!(response.status(), status, "{url}");
        response.into_body().collect().await.expect("body");
    }
    assert_eq!(allowed.requests(), 2);
    assert_eq!(internal.connections(), 0);
}

#[tokio::test]
async fn only_absolute_http_requests_and_connect_are_proxied() {
    let proxy = EgressGuard::new(only_127_0_0_1()).start_proxy().await.expect("proxy");
    for head in [
        "GET ftp://127.0.0.1:21/file HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET https://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /origin-form HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect to proxy");
        let answer = raw_exchange(&mut stream, head, "\0").await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{head:?} -> {answer}");
    }
    assert!(proxy.refusals().is_empty());
}

#[tokio::test]
async fn dropping_the_handle_stops_the_proxy() {
    let proxy = EgressGuard::new(only_127_0_0_1()).start_proxy().await.expect("proxy");
    let addr = proxy.addr();
    assert!(proxy.url().starts_with("http://127.0.0.1:"));
    drop(proxy);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "listener still open after drop");
}

/// Answers `first` on the first lookup and `later` on every lookup after it.
struct Rebinding {
    lookups: AtomicUsize,
    first: SocketAddr,
    later: SocketAddr,
}

impl Resolve for Rebinding {
    fn resolve<'a>(&'a self, _host: &'a str, _port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        let n = self.lookups.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(vec![if n == 0 { self.first } else { self.later }]) })
    }
}

/// Always answers the same list.
struct Fixed(Vec<SocketAddr>);

impl Resolve for Fixed {
    fn resolve<'a>(&'a self, _host: &'a str, _port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

#[tokio::test]
async fn dns_rebinding_never_reaches_the_internal_origin() {
    let allowed = Origin::start("127.0.0.1").await;
    let internal = Origin::start("127.0.0.2").await;
    let resolver =
        Arc::new(Rebinding { lookups: AtomicUsize::new(0), first: allowed.addr, later: internal.addr });
    let guard = EgressGuard::with_resolver(only_127_0_0_1(), resolver.clone());
    let proxy = guard.start_proxy().await.expect("proxy");
    let client = client_via(&proxy.url());

    let mut ok = 0;
    for _ in 0..4 {
        let response = client.get("http://rebind.test:8080/").send().await.expect("request");
        if response.status() == 200 {
            ok += 1;
            let body = response.text().await.expect("body");
            assert!(body.starts_with(&format!("hello from {}", allowed.addr)), "{body}");
        } else {
            assert_eq!(response.status(), 403);
        }
    }
    match guard.connect("rebind.test", 8080).await {
        Err(EgressError::Blocked(blocked)) => assert_eq!(blocked.ip, internal.addr.ip()),
        other => panic!("expected a refusal, got {other:?}"),
    }

    assert_eq!(ok, 1, "only the first lookup answered an allowed address");
    assert_eq!(resolver.lookups.load(Ordering::SeqCst), 5, "one lookup per connection, never a second one");
    assert_eq!(internal.connections(), 0);
    assert_eq!(allowed.connections(), 1);
    assert_eq!(proxy.refusals().len(), 3);
}

#[tokio::test]
async fn a_name_with_any_refused_address_is_refused_outright() {
    let allowed = Origin::start("127.0.0.1").await;
    let internal = Origin::start("127.0.0.2").await;
    let guard =
        EgressGuard::with_resolver(only_127_0_0_1(), Arc::new(Fixed(vec![allowed.addr, internal.addr])));

    let err = guard.connect("mixed.test", 80).await.expect_err("one address is internal");
    assert_eq!(err.to_string(), "blocked: 127.0.0.2 is a loopback address");
    assert_eq!(allowed.connections() + internal.connections(), 0);

    let (_stream, peer) = EgressGuard::with_resolver(only_127_0_0_1(), Arc::new(Fixed(vec![allowed.addr])))
        .connect("fine.test", 80)
        .await
        .expect("allowed");
    assert_eq!(peer, allowed.addr);
}

#[tokio::test]
async fn ip_literals_are_checked_without_dns() {
    let allowed = Origin::start("127.0.0.1").await;
    // A resolver that must not be asked about literals.
    let guard = EgressGuard::with_resolver(only_127_0_0_1(), Arc::new(Fixed(vec![])));
    let (_stream, peer) = guard.connect("127.0.0.1", allowed.addr.port()).await.expect("literal allowed");
    assert_eq!(peer, allowed.addr);
    for host in ["[::1]", "::1", "127.0.0.2", "::ffff:127.0.0.2"] {
        let err = guard.connect(host, 80).await.expect_err(host);
        assert!(matches!(err, EgressError::Blocked(_)), "{host}: {err}");
    }
    assert!(matches!(guard.connect("name.test", 80).await, Err(EgressError::NoAddress { .. })));
}

/// A site profile's upstream proxy sits behind the policy: yt-dlp → this proxy
/// (checks the target) → upstream proxy → site. The upstream here is a second
/// egress proxy, whose own refusals show that traffic really went through it.
#[tokio::test]
async fn an_upstream_proxy_is_chained_behind_the_policy_check() {
    use mediapro_core::site_profile::UpstreamProxy;
    let allowed = Origin::start("127.0.0.1").await;
    let internal = Origin::start("127.0.0.2").await;
    let loopback = EgressPolicy {
        allow_private_networks: false,
        allowed_networks: parse_networks("127.0.0.0/8").expect("network list"),
    };
    let closed = EgressPolicy { allow_private_networks: false, allowed_networks: Vec::new() };

    // Through an upstream that refuses everything: its refusal of the tunnel comes
    // back as a 502 naming it, and the origin never hears of the request.
    let refusing = EgressGuard::new(closed).start_proxy().await.expect("upstream");
    let via = UpstreamProxy::parse(&refusing.url()).expect("upstream url");
    let proxy = EgressGuard::new(only_127_0_0_1()).start_proxy_via(Some(&via)).await.expect("proxy");
    let response = client_via(&proxy.url()).get(allowed.url("/hello")).send().await.expect("request");
    assert_eq!(response.status(), 502);
    let body = response.text().await.expect("body");
    assert!(body.contains(&format!("CONNECT {} answered 'HTTP/1.1 403", allowed.addr)), "{body}");
    assert_eq!(refusing.refusals().len(), 1, "the request went through the upstream proxy");
    assert_eq!(allowed.requests(), 0);
    assert!(proxy.refusals().is_empty());

    // Through an upstream that allows loopback: plain http (in a tunnel) and CONNECT work.
    let upstream = EgressGuard::new(loopback).start_proxy().await.expect("upstream");
    let via = UpstreamProxy::parse(&upstream.url()).expect("upstream url");
    let proxy = EgressGuard::new(only_127_0_0_1()).start_proxy_via(Some(&via)).await.expect("proxy");
    let response = client_via(&proxy.url()).get(allowed.url("/hello")).send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), format!("hello from {0}, host {0}", allowed.addr));
    let mut tunnel = TcpStream::connect(proxy.addr()).await.expect("connect to proxy");
    let target = allowed.addr;
    let answer = raw_exchange(
        &mut tunnel,
        &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        "\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer =
        raw_exchange(&mut tunnel, "GET / HTTP/1.1\r\nHost: tunnel\r\nConnection: close\r\n\r\n", "\0").await;
    assert!(answer.ends_with(&format!("hello from {target}, host tunnel")), "{answer}");

    // A target the policy refuses is refused here: the upstream (which would allow
    // it) never hears of it.
    let response = client_via(&proxy.url()).get(internal.url("/")).send().await.expect("request");
    assert_eq!(response.status(), 403);
    assert_eq!(proxy.first_refusal_reason().as_deref(), Some("blocked: 127.0.0.2 is a loopback address"));
    assert_eq!(internal.connections(), 0);
    assert!(upstream.refusals().is_empty());
}

/// A name is resolved and checked here, and the upstream proxy is asked for a
/// tunnel to that checked address, never for the name (which it could resolve to
/// an address the policy refuses).
#[tokio::test]
async fn an_upstream_proxy_is_asked_for_the_checked_address_not_the_name() {
    use mediapro_core::site_profile::UpstreamProxy;
    let allowed = Origin::start("127.0.0.1").await;
    // A stand-in upstream proxy that records each request head, then tunnels.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream_addr = listener.local_addr().expect("addr");
    let heads = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorded = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(client.read_u8().await.expect("head"));
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let target = head.split_whitespace().nth(1).expect("target").to_owned();
            recorded.lock().expect("heads").push(head);
            let mut origin = TcpStream::connect(&target).await.expect("origin");
            client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.expect("answer");
            let _ = tokio::io::copy_bidirectional(&mut client, &mut origin).await;
        }
    });
    let via = UpstreamProxy::parse(&format!("http://{upstream_addr}")).expect("upstream url");
    let guard = EgressGuard::with_resolver(only_127_0_0_1(), Arc::new(Fixed(vec![allowed.addr])));
    let proxy = guard.start_proxy_via(Some(&via)).await.expect("proxy");
    let port = allowed.addr.port();
    let response =
        client_via(&proxy.url()).get(format!("http://site.test:{port}/hello")).send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.expect("body"),
        format!("hello from {}, host site.test:{port}", allowed.addr)
    );
    let heads = heads.lock().expect("heads").clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with(&format!("CONNECT {} HTTP/1.1", allowed.addr)), "{heads:?}");
    assert!(!heads[0].contains("site.test"), "{heads:?}");
}

/// `first_connection` resolves at the first allowed connection (a refused one
/// is no contact), and `false` when the proxy stops without one.
#[tokio::test]
async fn first_connection_resolves_at_the_first_allowed_connection_only() {
    let allowed = Origin::start("127.0.0.1").await;
    let internal = Origin::start("127.0.0.2").await;
    let proxy = EgressGuard::new(only_127_0_0_1()).start_proxy().await.expect("proxy");
    let first = tokio::spawn(proxy.first_connection());
    let client = client_via(&proxy.url());

    let refused = client.get(internal.url("/")).send().await.expect("request");
    assert_eq!(refused.status(), 403);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!first.is_finished(), "a refused connection is no contact");
    assert_eq!(internal.connections(), 0);

    assert_eq!(client.get(allowed.url("/hello")).send().await.expect("request").status(), 200);
    let connected =
        tokio::time::timeout(Duration::from_secs(5), first).await.expect("resolved").expect("joined");
    assert!(connected);
    // Asked again later, it answers at once.
    assert!(tokio::time::timeout(Duration::from_secs(1), proxy.first_connection()).await.expect("at once"));

    let idle = EgressGuard::new(only_127_0_0_1()).start_proxy().await.expect("proxy");
    let never = idle.first_connection();
    drop(idle);
    assert!(!tokio::time::timeout(Duration::from_secs(5), never).await.expect("resolved on stop"));
}
