//! The one place where errors become HTTP: the status comes from the error-code
//! table (`crates/mediapro-core/src/error.rs`), the body is `{"error", "code"}`.
//! 5xx answers carry an opaque message; the cause chain goes to the log.

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError},
    http::{StatusCode, header},
};
use mediapro_core::{Code, ErrorClass, HasCode};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// Seconds, for answers worth retrying later (429, 503, 507).
    pub retry_after: Option<u64>,
}

/// Every error answer's body.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    /// A human-readable message; for 400s it starts with the field's path.
    pub error: &'a str,
    /// The machine code (`mediapro_core::Code`, listed in `docs/error-codes.md`).
    pub code: &'a str,
}

/// Written by hand: `code` is the enum of every code of the error table.
impl utoipa::PartialSchema for ErrorBody<'_> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use strum::IntoEnumIterator as _;
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .description(Some("Every error: a message and a machine code (see docs/error-codes.md)."))
            .property(
                "error",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("A human-readable message; for 400s it starts with the field's path")),
            )
            .required("error")
            .property(
                "code",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(Code::iter().map(Code::as_str)))
                    .description(Some("The machine code")),
            )
            .required("code")
            .into()
    }
}

impl utoipa::ToSchema for ErrorBody<'_> {
    fn name() -> std::borrow::Cow<'static, str> {
        "ErrorBody".into()
    }
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        let retry_after = matches!(code.class(), ErrorClass::Unavailable).then_some(5);
        Self { code, message: message.into(), retry_after }
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// A bug or impossible state: logged, answered with an opaque 500.
    pub fn internal(what: &str) -> Self {
        tracing::error!(what, "internal error");
        Self::new(Code::InternalError, "internal error")
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(Code::NotFound, format!("{what} not found"))
    }

    /// Any typed library error: its code decides the status.
    pub fn from_coded<E: HasCode + std::error::Error>(err: &E) -> Self {
        let code = err.code();
        let message = if code.status() >= 500 {
            tracing::error!(error = %error_chain(err), code = code.as_str(), "request failed");
            match code.class() {
                ErrorClass::Unavailable => "a backing service is unavailable; try again shortly".to_owned(),
                ErrorClass::Upstream => err.to_string(),
                _ => "internal error".to_owned(),
            }
        } else {
            err.to_string()
        };
        Self::new(code, message)
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
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status());
        if self.code == Code::RequestTimeout {
            // The rest of a too-slow body is not worth waiting for.
            res.force_close();
        }
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        res.json(ErrorBody { error: &self.message, code: self.code.as_str() })
    }
}

impl<E: HasCode + std::error::Error> From<E> for ApiError {
    fn from(err: E) -> Self {
        ApiError::from_coded(&err)
    }
}

/// Malformed, oversized or mistyped JSON bodies.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::OverflowKnownLength { limit, .. } | JsonPayloadError::Overflow { limit } => {
            ApiError::new(Code::PayloadTooLarge, format!("request body is larger than {limit} bytes"))
        }
        JsonPayloadError::ContentType => ApiError::new(
            Code::UnsupportedMediaType,
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonPayloadError::Payload(e) if crate::body_deadline::is_timeout(e) => request_timeout(),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::new(Code::InvalidRequest, format!("invalid request body: {e}"))
        }
        JsonPayloadError::Deserialize(e) => {
            ApiError::new(Code::InvalidJson, format!("request body is not valid JSON: {e}"))
        }
        _ => ApiError::new(Code::InvalidBody, "could not read the request body"),
    };
    actix_web::error::InternalError::from_response(err, api.error_response()).into()
}

/// A body that stalled or trickled (`crates/api/src/body_deadline.rs`).
pub fn request_timeout() -> ApiError {
    ApiError::new(Code::RequestTimeout, "the request body stalled or arrived too slowly")
}

/// A payload read error: a timeout, or `otherwise`.
pub fn payload_error(err: &PayloadError, otherwise: Code) -> ApiError {
    if crate::body_deadline::is_timeout(err) {
        request_timeout()
    } else {
        ApiError::new(otherwise, err.to_string())
    }
}

pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = ApiError::new(Code::InvalidQuery, format!("invalid query string: {err}"));
    actix_web::error::InternalError::from_response(err, api.error_response()).into()
}

/// A path segment that does not parse (e.g. a task id that is not a UUID) names
/// nothing that exists.
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    let api = ApiError::not_found("task");
    actix_web::error::InternalError::from_response(err, api.error_response()).into()
}
