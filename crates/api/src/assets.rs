//! Static files embedded in the binary and served with the same headers: the web UI
//! (`crates/api/src/ui.rs`) and the API reference page (`crates/api/src/openapi.rs`).
//!
//! Every answer carries the set's Content-Security-Policy, `nosniff`, no referrer, and a
//! strong `ETag` (SHA-256 of the bytes, computed once) so a browser revalidates cheaply
//! with `If-None-Match` (`Cache-Control: no-cache`) and gets `304`.

use actix_web::{HttpRequest, HttpResponse, ResponseError, http::header};
use sha2::{Digest, Sha256};

use mediapro_core::Code;

use crate::error::ApiError;

/// One embedded file.
pub(crate) struct Asset {
    /// Its name in the set (`index.html` is the set's page).
    pub(crate) name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Quoted strong validator, e.g. `"3f1c…"`.
    etag: String,
}

impl Asset {
    pub(crate) fn new(name: &'static str, content_type: &'static str, body: &'static [u8]) -> Self {
        let digest = Sha256::digest(body);
        // 128 bits of the hash are plenty to tell versions apart.
        let etag = format!("\"{}\"", hex::encode(&digest[..16]));
        Self { name, content_type, body, etag }
    }
}

/// A page (`index.html`) and its files, served under one Content-Security-Policy.
pub(crate) struct AssetSet {
    /// What the set is, in a 404's message ("UI", "API docs").
    what: &'static str,
    csp: &'static str,
    files: Vec<Asset>,
}

impl AssetSet {
    pub(crate) fn new(what: &'static str, csp: &'static str, files: Vec<Asset>) -> Self {
        Self { what, csp, files }
    }

    /// The page, `index.html`.
    pub(crate) fn page(&self, req: &HttpRequest) -> HttpResponse {
        match self.files.iter().find(|a| a.name == "index.html") {
            Some(asset) => serve(req, asset, self.csp),
            None => ApiError::internal(&format!("the {} page is not embedded", self.what)).error_response(),
        }
    }

    /// Any other file of the set by name, or a JSON 404.
    pub(crate) fn file(&self, req: &HttpRequest, name: &str) -> HttpResponse {
        match self.files.iter().find(|a| a.name == name && a.name != "index.html") {
            Some(asset) => serve(req, asset, self.csp),
            None => ApiError::new(Code::NotFound, format!("no {} file named '{name}'", self.what))
                .error_response(),
        }
    }
}

/// The asset under the Content-Security-Policy `csp`, or `304 Not Modified` when the
/// client already holds this version.
fn serve(req: &HttpRequest, asset: &Asset, csp: &'static str) -> HttpResponse {
    let fresh = client_has(req, &asset.etag);
    let mut res = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    res.insert_header((header::ETAG, asset.etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if fresh {
        return res.finish();
    }
    res.content_type(asset.content_type).body(asset.body)
}

/// `If-None-Match` lists our ETag (or is `*`). The comparison is the weak one, as
/// RFC 9110 prescribes for `If-None-Match`: a `W/` prefix is ignored.
fn client_has(req: &HttpRequest, etag: &str) -> bool {
    req.headers().get_all(header::IF_NONE_MATCH).filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
    })
}
