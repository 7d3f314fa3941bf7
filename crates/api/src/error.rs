//! The one place where errors become HTTP: status + `{"error", "code"}` JSON.
//! 5xx answers carry an opaque message; the cause chain goes to the log.

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    error::{JsonPayloadError, PathError, QueryPayloadError},
    http::{StatusCode, header},
};
use mediapro_core::{ErrorClass, HasErrorClass};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 503s worth retrying.
    pub retry_after: Option<u32>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    code: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    /// A bug or impossible state: logged, answered with an opaque 500.
    pub fn internal(what: &str) -> Self {
        tracing::error!(what, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error")
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    /// Any typed library error, classified once here.
    pub fn from_class<E: HasErrorClass + std::error::Error>(err: &E) -> Self {
        let status = match err.class() {
            ErrorClass::BadRequest => StatusCode::BAD_REQUEST,
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::Conflict => StatusCode::CONFLICT,
            ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Upstream => StatusCode::BAD_GATEWAY,
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = if status.is_server_error() {
            tracing::error!(error = %error_chain(err), code = err.code(), "request failed");
            match err.class() {
                ErrorClass::Unavailable => "a backing service is unavailable; try again shortly".to_owned(),
                _ => "internal error".to_owned(),
            }
        } else {
            err.to_string()
        };
        let mut api = Self::new(status, err.code(), message);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            api.retry_after = Some(5);
        }
        api
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        res.json(Body { error: &self.message, code: self.code })
    }
}

impl<E: HasErrorClass + std::error::Error> From<E> for ApiError {
    fn from(err: E) -> Self {
        ApiError::from_class(&err)
    }
}

/// Malformed, oversized or mistyped JSON bodies.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::OverflowKnownLength { limit, .. } | JsonPayloadError::Overflow { limit } => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body is larger than {limit} bytes"),
            )
        }
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", format!("invalid request body: {e}"))
        }
        JsonPayloadError::Deserialize(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("request body is not valid JSON: {e}"),
        ),
        _ => ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", "could not read the request body"),
    };
    actix_web::error::InternalError::from_response(err, api.error_response()).into()
}

pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("invalid query string: {err}"));
    actix_web::error::InternalError::from_response(err, api.error_response()).into()
}

/// A path segment that does not parse (e.g. a task id that is not a UUID) names
/// nothing that exists.
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    let api = ApiError::not_found("task");
    actix_web::error::InternalError::from_response(err, api.error_response()).into()
}
