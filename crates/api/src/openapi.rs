//! The API's OpenAPI 3.1 document, generated from the code, and its reference page.
//!
//! Why here: clients (and Schemathesis in CI) need a machine-readable contract that
//! cannot drift from the service. Request and response shapes come from the types
//! themselves (`utoipa::ToSchema` on the bodies in `mediapro-core` and the answers
//! here), each handler carries its `#[utoipa::path]`, and what the route table
//! (`routes::ROUTES`) says — who may call a route, which error codes it answers — is
//! added by [`RouteContract`]: security per operation, and per error status the
//! codes of `mediapro_core::Code` that status can carry. Tests keep the document and
//! the registered routes equal.
//!
//! `GET /api/openapi.json` and `GET /api/docs` (Swagger UI, vendored from the npm
//! package `swagger-ui-dist`, embedded in the binary: no CDN) are open: the document
//! describes the API, it reveals no data, and a client needs it before it has a key.

use std::{collections::BTreeMap, sync::LazyLock};

use actix_web::{HttpRequest, HttpResponse, web};
use mediapro_core::Code;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, ContentBuilder, RefOr, ResponseBuilder,
        header::HeaderBuilder,
        schema::{AllOfBuilder, ObjectBuilder, Ref, Type},
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    },
};

use crate::{
    assets::{Asset, AssetSet},
    error::ErrorBody,
    routes::{self, Access, Verb},
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "MediaPro",
        description = "Self-hosted media download and processing: analyze a URL (yt-dlp), download it as \
                       a background task, process media (ffmpeg), follow tasks and fetch results.\n\n\
                       Every error is `{\"error\": \"<message>\", \"code\": \"<code>\"}`; each error response \
                       lists the codes it can carry. Keys: `Authorization: Bearer <key>` or \
                       `X-API-Key: <key>`; read keys may only `GET`.",
        license(name = "MIT")
    ),
    paths(
        routes::analyze::analyze,
        routes::download::create,
        routes::process::create,
        routes::uploads::upload,
        routes::tasks::list,
        routes::events::events,
        routes::tasks::get,
        routes::tasks::cancel,
        routes::tasks::retry,
        routes::deliveries::list,
        routes::result::download_result,
        routes::archive::list,
        routes::archive::export,
        routes::archive::import,
        routes::archive::delete,
        routes::site_profiles::list,
        routes::site_profiles::get,
        routes::site_profiles::put,
        routes::site_profiles::delete,
        routes::site_profiles::put_cookies,
        routes::site_profiles::check,
        routes::subscriptions::list,
        routes::subscriptions::create,
        routes::subscriptions::get,
        routes::subscriptions::delete,
        routes::subscriptions::checks,
        routes::subscriptions::pause,
        routes::subscriptions::resume,
        routes::subscriptions::check,
        routes::whoami::whoami,
        openapi_json,
        docs_page,
        docs_file,
        routes::metrics::metrics,
        routes::health::healthz,
        routes::health::readyz,
        crate::ui::index,
        crate::ui::file,
    ),
    components(schemas(ErrorBody, Binary)),
    tags(
        (name = "media", description = "Analyze, download, process, upload"),
        (name = "tasks", description = "Follow, list, cancel and retry tasks; fetch results"),
        (name = "archive", description = "The download archive: what was downloaded, in yt-dlp's archive format"),
        (name = "site profiles", description = "Per-site cookies, headers, pacing and limits, picked by a URL's host"),
        (name = "subscriptions", description = "Collections re-checked on a schedule: new entries are downloaded"),
        (name = "service", description = "Health, keys, this document"),
        (name = "web UI", description = "The embedded web UI's files"),
    ),
    modifiers(&RouteContract)
)]
pub struct ApiDoc;

/// Raw bytes: an upload's body, a result file.
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> RefOr<openapi::schema::Schema> {
        use openapi::schema::{KnownFormat, SchemaFormat};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl utoipa::ToSchema for Binary {
    fn name() -> std::borrow::Cow<'static, str> {
        "Binary".into()
    }
}

/// The document as served (built once).
pub fn document() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        // Serialising plain maps and strings cannot fail; an empty object would be caught by the tests.
        ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".to_owned())
    });
    &JSON
}

/// Adds what `routes::ROUTES` says to every operation: its security (none for open
/// routes; a bearer key or an `X-API-Key` otherwise) and one response per error
/// status, whose `code` is the enum of that operation's codes with that status.
pub struct RouteContract;

impl Modify for RouteContract {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Authorization: Bearer <key>`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The same key in an `X-API-Key` header",
            ))),
        );
        for route in routes::ROUTES {
            let Some(item) = doc.paths.paths.get_mut(route.path) else { continue };
            for op in route.operations {
                let operation = match op.verb {
                    Verb::Get => item.get.as_mut(),
                    Verb::Post => item.post.as_mut(),
                    Verb::Put => item.put.as_mut(),
                    Verb::Delete => item.delete.as_mut(),
                };
                let Some(operation) = operation else { continue };
                let mut codes: Vec<Code> = op.errors().collect();
                if route.access != Access::Open {
                    codes.extend([Code::Unauthorized, Code::Forbidden]);
                    operation.security = Some(vec![
                        SecurityRequirement::new("bearer", Vec::<String>::new()),
                        SecurityRequirement::new("api_key", Vec::<String>::new()),
                    ]);
                }
                codes.push(Code::InternalError);
                let mut by_status: BTreeMap<u16, Vec<Code>> = BTreeMap::new();
                for code in codes {
                    let list = by_status.entry(code.status()).or_default();
                    if !list.contains(&code) {
                        list.push(code);
                    }
                }
                for (status, codes) in by_status {
                    operation
                        .responses
                        .responses
                        .insert(status.to_string(), RefOr::T(error_response(&codes)));
                }
            }
        }
    }
}

fn error_response(codes: &[Code]) -> openapi::Response {
    let description =
        codes.iter().map(|c| format!("`{}`: {}", c.as_str(), c.meaning())).collect::<Vec<_>>().join("\n\n");
    let narrowed = ObjectBuilder::new().property(
        "code",
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(codes.iter().map(|c| c.as_str()))),
    );
    let schema = AllOfBuilder::new().item(Ref::from_schema_name("ErrorBody")).item(narrowed);
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(schema)).build());
    if codes.iter().any(|c| c.status() == 401) {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new().schema(ObjectBuilder::new().schema_type(Type::String)).build(),
        );
    }
    if codes.iter().any(|c| matches!(c.status(), 429 | 503 | 507)) {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some("seconds to wait before trying again"))
                .build(),
        );
    }
    response.build()
}

/// The paths and methods (`GET`, …) of the document, for the tests.
#[cfg(test)]
fn operations(doc: &openapi::OpenApi) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for (path, item) in &doc.paths.paths {
        for (method, op) in [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("OPTIONS", &item.options),
            ("HEAD", &item.head),
            ("PATCH", &item.patch),
            ("TRACE", &item.trace),
        ] {
            if op.is_some() {
                out.push((path.clone(), method));
            }
        }
    }
    out
}

/// Registers the document and the reference page (open, like `/healthz`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(routes::resource("/api/openapi.json").route(web::get().to(openapi_json)))
        .service(routes::resource("/api/docs").route(web::get().to(docs_page)))
        .service(routes::resource("/api/docs/{file}").route(web::get().to(docs_file)));
}

/// The OpenAPI 3.1 document of this API
///
/// Generated from the code; no key needed.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "service",
    responses((status = 200, description = "The document", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(document())
}

/// Swagger UI allows no inline script: its start-up is `docs.js`; its style sheet
/// embeds SVG icons as `data:` images, and React sets element styles (allowed).
pub const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:";

static DOCS_ASSETS: LazyLock<AssetSet> = LazyLock::new(|| {
    AssetSet::new(
        "API docs",
        DOCS_CSP,
        vec![
            Asset::new("index.html", "text/html; charset=utf-8", include_bytes!("../apidocs/index.html")),
            Asset::new("docs.js", "text/javascript; charset=utf-8", include_bytes!("../apidocs/docs.js")),
            Asset::new(
                "swagger-ui-bundle.js",
                "text/javascript; charset=utf-8",
                include_bytes!("../apidocs/swagger-ui-dist/swagger-ui-bundle.js"),
            ),
            Asset::new(
                "swagger-ui.css",
                "text/css; charset=utf-8",
                include_bytes!("../apidocs/swagger-ui-dist/swagger-ui.css"),
            ),
        ],
    )
});

/// The interactive API reference (Swagger UI)
///
/// Embedded assets, no CDN; reads `/api/openapi.json`.
#[utoipa::path(
    get,
    path = "/api/docs",
    tag = "service",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 304, description = "The client's copy (`If-None-Match`) is current"),
    )
)]
pub(crate) async fn docs_page(req: HttpRequest) -> HttpResponse {
    DOCS_ASSETS.page(&req)
}

/// A file of the reference page (script, style sheet)
#[utoipa::path(
    get,
    path = "/api/docs/{file}",
    tag = "service",
    params(("file" = String, Path, description = "`docs.js`, `swagger-ui-bundle.js` or `swagger-ui.css`")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 304, description = "The client's copy (`If-None-Match`) is current"),
    )
)]
pub(crate) async fn docs_file(req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    DOCS_ASSETS.file(&req, &name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use actix_web::{App, ResponseError as _, http::StatusCode, http::header, test as atest};
    use serde_json::Value;
    use strum::IntoEnumIterator as _;

    use super::*;
    use crate::error::ApiError;

    fn doc_json() -> Value {
        serde_json::from_str(document()).unwrap()
    }

    /// Every route of `routes::ROUTES` (which `configure` must use) is in the
    /// document with exactly its methods, and the document has nothing else.
    #[test]
    fn the_document_has_exactly_the_listed_routes() {
        let listed: BTreeSet<(String, &str)> = routes::ROUTES
            .iter()
            .flat_map(|r| r.operations.iter().map(|o| (r.path.to_owned(), o.verb.as_str())))
            .collect();
        let documented: BTreeSet<(String, &str)> = operations(&ApiDoc::openapi()).into_iter().collect();
        let missing: Vec<_> = listed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&listed).collect();
        assert!(missing.is_empty(), "routes without a #[utoipa::path] in ApiDoc: {missing:?}");
        assert!(extra.is_empty(), "documented operations that routes::ROUTES does not list: {extra:?}");
    }

    /// What `configure` registers is what `routes::ROUTES` lists: every listed
    /// method reaches something other than the 405, every other method gets the
    /// 405 with `Allow` naming the listed ones. (A registered path that is not
    /// listed panics in `routes::resource` while the app is built.)
    #[actix_web::test]
    async fn configure_registers_exactly_the_listed_methods() {
        let keyring = web::Data::new(
            crate::auth::Keyring::new(&mediapro_core::settings::SecuritySettings::default()).unwrap(),
        );
        let app = atest::init_service(
            App::new()
                .app_data(keyring)
                .configure(routes::configure)
                .default_service(web::to(routes::not_found)),
        )
        .await;
        for route in routes::ROUTES {
            let uri = route
                .path
                .replace("{task_id}", "0b7e3f9e-3c55-4c8e-9b1e-5f3a3b0c2d10")
                .replace("{name}", "example")
                .replace("/ui/{file}", "/ui/app.js")
                .replace("{file}", "docs.js");
            for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
                let listed = route.operations.iter().any(|o| o.verb.as_str() == method);
                let req = atest::TestRequest::default()
                    .method(method.parse().unwrap())
                    .uri(&uri)
                    .insert_header((header::HOST, "127.0.0.1"))
                    .to_request();
                let res = atest::call_service(&app, req).await;
                if listed {
                    assert_ne!(
                        res.status(),
                        StatusCode::METHOD_NOT_ALLOWED,
                        "{method} {} is listed",
                        route.path
                    );
                    assert_ne!(
                        res.status(),
                        StatusCode::NOT_FOUND,
                        "{method} {} is not registered",
                        route.path
                    );
                } else {
                    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {}", route.path);
                    let allow = res.headers().get(header::ALLOW).and_then(|v| v.to_str().ok());
                    assert_eq!(allow, Some(route.allow().as_str()), "{method} {}", route.path);
                }
            }
        }
    }

    /// OpenAPI requires each `operationId` to be unique: clients generated from the
    /// document name their methods after it, and tools (Schemathesis' link
    /// inference) find operations by it.
    #[test]
    fn every_operation_id_is_unique() {
        let doc = doc_json();
        let mut seen = std::collections::BTreeMap::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                let id =
                    op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
                if let Some(other) = seen.insert(id.to_owned(), format!("{method} {path}")) {
                    panic!("operationId {id:?} of {method} {path} is also {other}");
                }
            }
        }
        assert!(seen.len() > 30, "{seen:?}");
    }

    #[test]
    fn the_document_is_openapi_3_1_with_auth_and_every_error_code() {
        let doc = doc_json();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(schemes["api_key"]["in"], "header");
        assert_eq!(schemes["api_key"]["name"], "X-API-Key");
        let codes: BTreeSet<&str> = doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(codes, Code::iter().map(Code::as_str).collect());
        for route in routes::ROUTES {
            for op in route.operations {
                let method = op.verb.as_str().to_lowercase();
                let operation = &doc["paths"][route.path][&method];
                let secured = operation.get("security").is_some();
                assert_eq!(secured, route.access != Access::Open, "{method} {}: security", route.path);
                for code in op.errors() {
                    let listed = &operation["responses"][code.status().to_string()]["content"]["application/json"]
                        ["schema"]["allOf"][1]["properties"]["code"]["enum"];
                    assert!(
                        listed.as_array().is_some_and(|l| l.iter().any(|c| c == code.as_str())),
                        "{method} {}: {code} under {}",
                        route.path,
                        code.status()
                    );
                }
            }
        }
    }

    #[test]
    fn headers_of_submissions_and_events_are_documented() {
        let doc = doc_json();
        let header_params = |path: &str, method: &str| -> Vec<String> {
            doc["paths"][path][method]["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "header")
                        .map(|p| p["name"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        for path in ["/api/download", "/api/process", "/api/uploads"] {
            assert!(header_params(path, "post").contains(&"Idempotency-Key".to_owned()), "{path}");
        }
        assert!(header_params("/api/events", "get").contains(&"Last-Event-ID".to_owned()));
    }

    #[actix_web::test]
    async fn document_and_reference_page_are_served_without_a_key() {
        let app = atest::init_service(App::new().configure(configure)).await;
        let res =
            atest::call_service(&app, atest::TestRequest::get().uri("/api/openapi.json").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers().get(header::CONTENT_TYPE).unwrap(), "application/json");
        let body: Value = serde_json::from_slice(&atest::read_body(res).await).unwrap();
        assert_eq!(body, doc_json());
        for (uri, ctype) in [
            ("/api/docs", "text/html; charset=utf-8"),
            ("/api/docs/docs.js", "text/javascript; charset=utf-8"),
            ("/api/docs/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
            ("/api/docs/swagger-ui.css", "text/css; charset=utf-8"),
        ] {
            let res = atest::call_service(&app, atest::TestRequest::get().uri(uri).to_request()).await;
            assert_eq!(res.status(), StatusCode::OK, "{uri}");
            assert_eq!(res.headers().get(header::CONTENT_TYPE).unwrap(), ctype, "{uri}");
            assert_eq!(res.headers().get(header::CONTENT_SECURITY_POLICY).unwrap(), DOCS_CSP, "{uri}");
        }
        let res =
            atest::call_service(&app, atest::TestRequest::get().uri("/api/docs/index.html").to_request())
                .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }

    /// The page loads only its own files: no CDN, no inline script.
    #[test]
    fn the_reference_page_loads_only_embedded_files() {
        let html = std::str::from_utf8(include_bytes!("../apidocs/index.html")).unwrap();
        assert!(!html.contains("http://") && !html.contains("https://"), "{html}");
        assert!(!html.contains("<script>"), "inline script");
        for file in ["docs.js", "swagger-ui-bundle.js", "swagger-ui.css"] {
            assert!(html.contains(&format!("/api/docs/{file}")), "{file}");
        }
    }

    /// `ErrorBody` is what `ApiError` sends.
    #[actix_web::test]
    async fn error_bodies_match_the_error_schema() {
        let res = ApiError::new(Code::NotFound, "x").error_response();
        let body: Value =
            serde_json::from_slice(&actix_web::body::to_bytes(res.into_body()).await.unwrap()).unwrap();
        let mut keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "error"]);
    }
}
