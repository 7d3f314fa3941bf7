//! `Idempotency-Key` on the submission routes (`POST /api/download`, `/api/process`,
//! `/api/uploads`): a client that timed out or got a 503 can send the request again
//! with the same key and never create a second task.
//!
//! - The first request with a key claims it in Redis (`crates/queue/src/idempotency.rs`;
//!   `SET NX`, so of concurrent duplicates exactly one goes through), runs, and its
//!   answer is kept for 24 h with a fingerprint of its method, route and body bytes.
//! - A later request with the key and the same fingerprint gets that answer again
//!   (header `Idempotent-Replayed: true`); with another fingerprint, `422
//!   idempotency_key_reused`. One that arrives while the first still runs waits for
//!   its answer (up to [`WAIT_FOR_FIRST`], then `409 idempotency_key_in_progress`).
//! - Answers that say "try again" are not kept: 5xx, `408` and `429`, and any answer
//!   given before the whole body was read (its fingerprint is unknown). The key is
//!   released and the next request with it runs afresh.
//!
//! Keys are scoped to the caller's API key (anonymous callers share one scope).

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use actix_web::{
    Error, HttpMessage, HttpResponse, ResponseError,
    body::{BoxBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    error::PayloadError,
    http::{
        Method, StatusCode,
        header::{self, HeaderName, HeaderValue},
    },
    middleware::Next,
    web::{self, Bytes},
};
use futures::{Stream, StreamExt};
use mediapro_core::Code;
use mediapro_queue::idempotency::{Claim, StoredAnswer};
use sha2::{Digest, Sha256};

use crate::{auth::Principal, body_deadline, error::ApiError, state::AppState};

pub const HEADER: HeaderName = HeaderName::from_static("idempotency-key");
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// How long a duplicate waits for the first request's answer.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
const MAX_KEY_LEN: usize = 255;

/// The key as sent: 1–255 printable ASCII characters.
fn parse_key(value: &HeaderValue) -> Result<&str, ApiError> {
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ApiError::new(
            Code::InvalidIdempotencyKey,
            format!("Idempotency-Key: 1 to {MAX_KEY_LEN} printable ASCII characters"),
        ));
    }
    Ok(key)
}

/// The Redis scope of a key: the caller and the key, digested (keys are the
/// client's text; the digest keeps Redis key names bounded and opaque).
fn scope(principal: Option<&Principal>, key: &str) -> String {
    let caller = principal.and_then(|p| p.key_id.as_deref()).unwrap_or("anonymous");
    hex::encode(Sha256::new().chain_update(caller).chain_update([0]).chain_update(key).finalize())
}

/// Fingerprint of a request: method, matched route and body bytes.
#[derive(Clone)]
struct Fingerprint {
    hasher: Sha256,
    /// The body was read to its end.
    complete: bool,
}

impl Fingerprint {
    fn new(method: &Method, route: &str) -> Self {
        let hasher = Sha256::new()
            .chain_update(method.as_str())
            .chain_update([0])
            .chain_update(route)
            .chain_update([0]);
        Self { hasher, complete: false }
    }

    /// The hex digest, if the whole body went through it.
    fn finish(self) -> Option<String> {
        self.complete.then(|| hex::encode(self.hasher.finalize()))
    }
}

/// The request's payload, passed through to the handler and fed to a fingerprint.
struct Hashing<S> {
    inner: S,
    fingerprint: Arc<Mutex<Fingerprint>>,
}

impl<S> Stream for Hashing<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(seen) = &item
            && let Ok(mut fp) = self.fingerprint.lock()
        {
            match seen {
                Some(Ok(chunk)) => fp.hasher.update(chunk),
                None => fp.complete = true,
                Some(Err(_)) => {}
            }
        }
        item
    }
}

/// Middleware of the submission resources (`routes::submission`), inside the key check.
pub async fn idempotent(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(value) = req.headers().get(HEADER).cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if req.method() != Method::POST {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let key = match parse_key(&value) {
        Ok(key) => key,
        Err(err) => return Ok(answer(req, err.error_response())),
    };
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(answer(req, ApiError::internal("idempotency: no state").error_response()));
    };
    let scope = scope(req.extensions().get::<Principal>(), key);
    let route = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
    let fingerprint = Fingerprint::new(req.method(), &route);

    let waited = Instant::now();
    loop {
        match state.queue.idempotency_claim(&scope).await {
            Err(e) => return Ok(answer(req, ApiError::from_coded(&e).error_response())),
            Ok(Claim::Won) => break,
            Ok(Claim::Answered(first)) => {
                let limit = state
                    .settings
                    .limits
                    .max_file_size_bytes
                    .max(state.settings.limits.max_body_bytes as u64);
                let mine = match read_fingerprint(&mut req, fingerprint, limit).await {
                    Ok(mine) => mine,
                    Err(err) => return Ok(answer(req, err.error_response())),
                };
                if mine != first.fingerprint {
                    let err = ApiError::new(
                        Code::IdempotencyKeyReused,
                        "this Idempotency-Key was used with a different request; use a new key",
                    );
                    return Ok(answer(req, err.error_response()));
                }
                return Ok(answer(req, replay(&first)));
            }
            Ok(Claim::InProgress) if waited.elapsed() < WAIT_FOR_FIRST => tokio::time::sleep(POLL).await,
            Ok(Claim::InProgress) => {
                let err = ApiError::new(
                    Code::IdempotencyKeyInProgress,
                    "the first request with this Idempotency-Key is still being handled",
                )
                .with_retry_after(1);
                return Ok(answer(req, err.error_response()));
            }
        }
    }

    // This request holds the key: run it with its body fed to the fingerprint.
    let shared = Arc::new(Mutex::new(fingerprint));
    let inner = req.take_payload();
    let hashing: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(Hashing { inner, fingerprint: shared.clone() });
    req.set_payload(Payload::from(hashing));
    let res = match next.call(req).await {
        Ok(res) => res,
        Err(e) => {
            release(&state, &scope).await;
            return Err(e);
        }
    };
    let digest = shared.lock().ok().and_then(|fp| fp.clone().finish());
    let status = res.status();
    let keep = !(status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS);
    let Some(digest) = digest.filter(|_| keep) else {
        release(&state, &scope).await;
        return Ok(res.map_into_boxed_body());
    };
    let (http_req, res) = res.into_parts();
    let content_type =
        res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (res, body) = res.into_parts();
    let bytes = match actix_web::body::to_bytes(body).await {
        Ok(bytes) => bytes,
        Err(_) => {
            release(&state, &scope).await;
            let res = ApiError::internal("idempotency: response body").error_response();
            return Ok(ServiceResponse::new(http_req, res));
        }
    };
    let stored = StoredAnswer {
        fingerprint: digest,
        status: status.as_u16(),
        content_type,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    if let Err(e) = state.queue.idempotency_answer(&scope, stored).await {
        // The task exists and the client gets its answer; a retry with this key
        // in the next minutes would wait and then get 409, not a second task.
        tracing::warn!(error = %e, "idempotency answer not stored");
    }
    Ok(ServiceResponse::new(http_req, res.set_body(BoxBody::new(bytes))))
}

async fn release(state: &AppState, scope: &str) {
    if let Err(e) = state.queue.idempotency_release(scope).await {
        tracing::warn!(error = %e, "idempotency key not released; it expires on its own");
    }
}

/// Reads the whole body (at most `limit` bytes) into `fingerprint`.
async fn read_fingerprint(
    req: &mut ServiceRequest,
    mut fingerprint: Fingerprint,
    limit: u64,
) -> Result<String, ApiError> {
    let mut payload = req.take_payload();
    let mut read: u64 = 0;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            if body_deadline::is_timeout(&e) {
                ApiError::new(Code::RequestTimeout, e.to_string())
            } else {
                ApiError::new(Code::InvalidBody, format!("the body could not be read: {e}"))
            }
        })?;
        read += chunk.len() as u64;
        if read > limit {
            return Err(ApiError::new(
                Code::PayloadTooLarge,
                format!("the body is larger than {limit} bytes"),
            ));
        }
        fingerprint.hasher.update(&chunk);
    }
    fingerprint.complete = true;
    Ok(fingerprint.finish().unwrap_or_default())
}

fn replay(first: &StoredAnswer) -> HttpResponse {
    let status = StatusCode::from_u16(first.status).unwrap_or(StatusCode::OK);
    let mut res = HttpResponse::build(status);
    if let Some(ct) = &first.content_type {
        res.insert_header((header::CONTENT_TYPE, ct.as_str()));
    }
    res.insert_header((REPLAYED, HeaderValue::from_static("true")));
    res.body(first.body.clone())
}

fn answer(req: ServiceRequest, res: HttpResponse) -> ServiceResponse<BoxBody> {
    req.into_response(res).map_into_boxed_body()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii_up_to_255() {
        for ok in ["a", "4f1c-9a", &"k".repeat(255), "with space"] {
            assert!(parse_key(&HeaderValue::from_str(ok).expect("header")).is_ok(), "{ok}");
        }
        for bad in ["", "   ", &"k".repeat(256)] {
            let err = parse_key(&HeaderValue::from_str(bad).expect("header")).expect_err(bad);
            assert_eq!(err.code, Code::InvalidIdempotencyKey);
        }
        let non_ascii = HeaderValue::from_bytes("clé".as_bytes()).expect("header");
        assert!(parse_key(&non_ascii).is_err());
    }

    #[test]
    fn scopes_differ_by_caller_and_key() {
        let a = Principal { key_id: Some("aaaa".into()), access: crate::auth::Access::Write };
        let b = Principal { key_id: Some("bbbb".into()), access: crate::auth::Access::Write };
        assert_ne!(scope(Some(&a), "k"), scope(Some(&b), "k"));
        assert_ne!(scope(Some(&a), "k"), scope(Some(&a), "k2"));
        assert_eq!(scope(Some(&a), "k"), scope(Some(&a), "k"));
        assert_eq!(scope(None, "k").len(), 64);
    }

    #[test]
    fn fingerprints_cover_method_route_and_the_whole_body() {
        let fp = |route: &str, body: &[u8], complete: bool| {
            let mut f = Fingerprint::new(&Method::POST, route);
            f.hasher.update(body);
            f.complete = complete;
            f.finish()
        };
        assert_eq!(fp("/api/download", b"{}", true), fp("/api/download", b"{}", true));
        assert_ne!(fp("/api/download", b"{}", true), fp("/api/process", b"{}", true));
        assert_ne!(fp("/api/download", b"{}", true), fp("/api/download", b"{ }", true));
        assert_eq!(fp("/api/download", b"{}", false), None);
    }
}
