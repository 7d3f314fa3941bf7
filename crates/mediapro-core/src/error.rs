//! Every typed error of the library says which class it belongs to, so the API can
//! map it to an HTTP status in one place without knowing each module's variants.

/// What kind of failure an error is, from the caller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request was wrong; retrying it unchanged cannot help (400).
    BadRequest,
    /// The thing asked for does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// A dependency (Redis, the database, a tool) is unreachable right now (503).
    Unavailable,
    /// The upstream (the media site) answered with something we cannot use (502).
    Upstream,
    /// A bug or an unexpected environment problem (500).
    Internal,
}

/// Implemented by every error type that can reach a client.
pub trait HasErrorClass {
    fn class(&self) -> ErrorClass;
    /// A stable, machine-readable code (`snake_case`), part of the API contract.
    fn code(&self) -> &'static str;
}
