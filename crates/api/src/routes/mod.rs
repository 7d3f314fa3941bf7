//! Routes, one module per endpoint group. Every resource answers unknown methods
//! with a JSON 405 (with `Allow`) and the app answers unknown paths with a JSON 404.
//!
//! [`ROUTES`] is the one list of routes: path, the access it needs, and per method
//! the error codes its handler can answer. [`resource`] takes its access from there
//! (so a route cannot be registered without being listed, nor without saying who
//! may call it), the 405's `Allow` header lists its methods, and the OpenAPI
//! document (`crates/api/src/openapi.rs`) takes security and error responses from
//! it; tests keep the list, `configure` and the document equal.

pub(crate) mod analyze;
pub(crate) mod archive;
pub(crate) mod deliveries;
pub(crate) mod download;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod process;
pub(crate) mod result;
pub(crate) mod site_profiles;
pub(crate) mod subscriptions;
pub(crate) mod tasks;
pub(crate) mod uploads;
pub(crate) mod whoami;

use actix_web::{
    Error, HttpRequest, HttpResponse, Resource, ResponseError,
    body::BoxBody,
    dev::{ServiceFactory, ServiceRequest, ServiceResponse},
    http::header,
    middleware, web,
};
use mediapro_core::Code;

pub use crate::auth::Access;
use crate::{auth, error::ApiError};

/// An HTTP method a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Delete => "DELETE",
        }
    }
}

/// One method of a route, with the error codes its handler can answer. The key
/// check's codes (`unauthorized`, `forbidden`) on non-open routes and
/// `internal_error` everywhere are added by the OpenAPI document.
#[derive(Debug)]
pub struct Operation {
    pub verb: Verb,
    /// Groups of codes (the shared ones below, then the operation's own).
    errors: &'static [&'static [Code]],
}

impl Operation {
    /// Every error code the operation can answer.
    pub fn errors(&self) -> impl Iterator<Item = Code> + '_ {
        self.errors.iter().flat_map(|group| group.iter().copied())
    }
}

#[derive(Debug)]
pub struct Route {
    pub path: &'static str,
    pub access: Access,
    pub operations: &'static [Operation],
}

impl Route {
    /// `GET, DELETE`: the `Allow` header of its 405.
    pub fn allow(&self) -> String {
        self.operations.iter().map(|o| o.verb.as_str()).collect::<Vec<_>>().join(", ")
    }
}

const fn op(verb: Verb, errors: &'static [&'static [Code]]) -> Operation {
    Operation { verb, errors }
}

/// A `url` field that is validated (scheme, address, resolution).
const URL_ERRORS: &[Code] =
    &[Code::InvalidUrl, Code::UnsupportedScheme, Code::PrivateAddress, Code::UnresolvableHost];
/// A JSON body read under the body deadline and size cap.
const JSON_BODY_ERRORS: &[Code] = &[
    Code::InvalidRequest,
    Code::InvalidJson,
    Code::InvalidBody,
    Code::RequestTimeout,
    Code::PayloadTooLarge,
    Code::UnsupportedMediaType,
];
/// A submission (`routes::submission`): rate limit and `Idempotency-Key`.
const SUBMISSION_ERRORS: &[Code] = &[
    Code::RateLimited,
    Code::InvalidIdempotencyKey,
    Code::IdempotencyKeyReused,
    Code::IdempotencyKeyInProgress,
];
/// A task written and queued.
const ENQUEUE_ERRORS: &[Code] = &[Code::QueueUnavailable, Code::StoreUnavailable, Code::InsufficientStorage];

/// Every route the API registers (`configure`, `crate::ui::configure`), in the order of
/// the OpenAPI document.
pub static ROUTES: &[Route] = {
    use Access::{Open, Read, Write};
    use Code::*;
    use Verb::{Delete, Get, Post, Put};
    &[
        Route {
            path: "/api/analyze",
            access: Write,
            operations: &[op(
                Post,
                &[
                    URL_ERRORS,
                    JSON_BODY_ERRORS,
                    &[
                        UnsupportedUrl,
                        InvalidCursor,
                        EgressBlocked,
                        RateLimited,
                        ToolError,
                        UpstreamError,
                        AnalyzeBusy,
                        AnalyzeTimeout,
                        StoreUnavailable,
                    ],
                ],
            )],
        },
        Route {
            path: "/api/download",
            access: Write,
            operations: &[op(
                Post,
                &[
                    URL_ERRORS,
                    JSON_BODY_ERRORS,
                    SUBMISSION_ERRORS,
                    ENQUEUE_ERRORS,
                    &[
                        InvalidFormatId,
                        InvalidSubtitleLang,
                        TooManySubtitleLangs,
                        InvalidOperation,
                        InvalidOutputFormat,
                        WebhooksNotConfigured,
                        InvalidPlaylistItems,
                    ],
                ],
            )],
        },
        Route {
            path: "/api/process",
            access: Write,
            operations: &[op(
                Post,
                &[
                    URL_ERRORS,
                    JSON_BODY_ERRORS,
                    SUBMISSION_ERRORS,
                    ENQUEUE_ERRORS,
                    &[
                        InvalidOperation,
                        InvalidOutputFormat,
                        InvalidInputFile,
                        UnsuitableInput,
                        NotMedia,
                        WebhooksNotConfigured,
                        ToolError,
                    ],
                ],
            )],
        },
        Route {
            path: "/api/uploads",
            access: Write,
            operations: &[op(
                Post,
                &[
                    SUBMISSION_ERRORS,
                    &[
                        EmptyUpload,
                        UploadInterrupted,
                        NotMedia,
                        InvalidQuery,
                        RequestTimeout,
                        PayloadTooLarge,
                        ToolError,
                        StoreUnavailable,
                        InsufficientStorage,
                    ],
                ],
            )],
        },
        Route {
            path: "/api/tasks",
            access: Read,
            operations: &[op(Get, &[&[InvalidFilter, InvalidCursor, InvalidQuery, StoreUnavailable]])],
        },
        Route {
            path: "/api/events",
            access: Read,
            operations: &[op(Get, &[&[InvalidFilter, InvalidQuery]])],
        },
        // Read: GET needs a read key; DELETE, not a GET, needs a full key.
        Route {
            path: "/api/tasks/{task_id}",
            access: Read,
            operations: &[
                op(Get, &[&[NotFound, StoreUnavailable]]),
                op(Delete, &[&[NotFound, TaskFinished, StoreUnavailable]]),
            ],
        },
        Route {
            path: "/api/tasks/{task_id}/retry",
            access: Write,
            operations: &[op(
                Post,
                &[&[NotFound, NotRetryable, RateLimited, QueueUnavailable, StoreUnavailable]],
            )],
        },
        Route {
            path: "/api/tasks/{task_id}/deliveries",
            access: Read,
            operations: &[op(Get, &[&[NotFound, StoreUnavailable]])],
        },
        Route {
            path: "/api/download-result/{task_id}",
            access: Read,
            operations: &[op(
                Get,
                &[&[
                    TaskNotCompleted,
                    InvalidQuery,
                    NotFound,
                    ResultMissing,
                    ResultTooLarge,
                    StoreUnavailable,
                ]],
            )],
        },
        Route {
            path: "/api/archive",
            access: Read,
            operations: &[op(Get, &[&[InvalidFilter, InvalidCursor, InvalidQuery, StoreUnavailable]])],
        },
        Route { path: "/api/archive/export", access: Read, operations: &[op(Get, &[&[StoreUnavailable]])] },
        Route {
            path: "/api/archive/import",
            access: Write,
            operations: &[op(Post, &[JSON_BODY_ERRORS, &[StoreUnavailable]])],
        },
        Route {
            path: "/api/archive/{extractor}/{media_id}",
            access: Write,
            operations: &[op(Delete, &[&[NotFound, StoreUnavailable]])],
        },
        Route { path: "/api/site-profiles", access: Read, operations: &[op(Get, &[&[StoreUnavailable]])] },
        // Read: GET needs a read key; PUT and DELETE need a full key.
        Route {
            path: "/api/site-profiles/{name}",
            access: Read,
            operations: &[
                op(Get, &[&[SiteProfileNotFound, StoreUnavailable]]),
                op(
                    Put,
                    &[URL_ERRORS, JSON_BODY_ERRORS, &[InvalidSiteProfile, InvalidFormatId, StoreUnavailable]],
                ),
                op(Delete, &[&[SiteProfileNotFound, StoreUnavailable]]),
            ],
        },
        Route {
            path: "/api/site-profiles/{name}/cookies",
            access: Write,
            operations: &[op(
                Put,
                &[&[
                    InvalidCookies,
                    SiteProfileNotFound,
                    InvalidBody,
                    RequestTimeout,
                    PayloadTooLarge,
                    StoreUnavailable,
                ]],
            )],
        },
        Route {
            path: "/api/site-profiles/{name}/check",
            access: Write,
            operations: &[op(Post, &[&[SiteProfileNotFound, NoCheckUrl, AnalyzeBusy, StoreUnavailable]])],
        },
        // Read: GETs need a read key; POST and DELETE, not GETs, need a full key.
        Route {
            path: "/api/subscriptions",
            access: Read,
            operations: &[
                op(Get, &[&[InvalidFilter, InvalidCursor, InvalidQuery, StoreUnavailable]]),
                op(
                    Post,
                    &[
                        URL_ERRORS,
                        JSON_BODY_ERRORS,
                        &[
                            InvalidSchedule,
                            InvalidPlaylistItems,
                            InvalidFormatId,
                            InvalidSubtitleLang,
                            TooManySubtitleLangs,
                            InvalidOperation,
                            InvalidOutputFormat,
                            StoreUnavailable,
                        ],
                    ],
                ),
            ],
        },
        Route {
            path: "/api/subscriptions/{subscription_id}",
            access: Read,
            operations: &[
                op(Get, &[&[NotFound, StoreUnavailable]]),
                op(Delete, &[&[NotFound, StoreUnavailable]]),
            ],
        },
        Route {
            path: "/api/subscriptions/{subscription_id}/checks",
            access: Read,
            operations: &[op(
                Get,
                &[&[NotFound, InvalidFilter, InvalidCursor, InvalidQuery, StoreUnavailable]],
            )],
        },
        Route {
            path: "/api/subscriptions/{subscription_id}/pause",
            access: Write,
            operations: &[op(Post, &[&[NotFound, StoreUnavailable]])],
        },
        Route {
            path: "/api/subscriptions/{subscription_id}/resume",
            access: Write,
            operations: &[op(Post, &[&[NotFound, StoreUnavailable]])],
        },
        Route {
            path: "/api/subscriptions/{subscription_id}/check",
            access: Write,
            operations: &[op(Post, &[&[NotFound, SubscriptionPaused, StoreUnavailable]])],
        },
        Route { path: "/api/whoami", access: Read, operations: &[op(Get, &[])] },
        Route { path: "/api/openapi.json", access: Open, operations: &[op(Get, &[])] },
        Route { path: "/api/docs", access: Open, operations: &[op(Get, &[])] },
        Route { path: "/api/docs/{file}", access: Open, operations: &[op(Get, &[&[NotFound]])] },
        Route { path: "/metrics", access: Read, operations: &[op(Get, &[&[NotFound]])] },
        Route { path: "/healthz", access: Open, operations: &[op(Get, &[])] },
        Route { path: "/readyz", access: Open, operations: &[op(Get, &[])] },
        Route { path: "/", access: Open, operations: &[op(Get, &[])] },
        Route { path: "/ui/{file}", access: Open, operations: &[op(Get, &[&[NotFound]])] },
    ]
};

/// The entry of [`ROUTES`] for a path pattern.
pub fn route(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.path == path)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/analyze").route(web::post().to(analyze::analyze)))
        .service(submission("/api/download").route(web::post().to(download::create)))
        .service(submission("/api/process").route(web::post().to(process::create)))
        .service(submission("/api/uploads").route(web::post().to(uploads::upload)))
        .service(resource("/api/tasks").route(web::get().to(tasks::list)))
        .service(resource("/api/events").route(web::get().to(events::events)))
        .service(
            resource("/api/tasks/{task_id}")
                .route(web::get().to(tasks::get))
                .route(web::delete().to(tasks::cancel)),
        )
        .service(resource("/api/tasks/{task_id}/retry").route(web::post().to(tasks::retry)))
        .service(resource("/api/tasks/{task_id}/deliveries").route(web::get().to(deliveries::list)))
        .service(resource("/api/download-result/{task_id}").route(web::get().to(result::download_result)))
        .service(resource("/api/archive").route(web::get().to(archive::list)))
        .service(resource("/api/archive/export").route(web::get().to(archive::export)))
        .service(resource("/api/archive/import").route(web::post().to(archive::import)))
        .service(resource("/api/archive/{extractor}/{media_id}").route(web::delete().to(archive::delete)))
        .service(resource("/api/site-profiles").route(web::get().to(site_profiles::list)))
        .service(
            resource("/api/site-profiles/{name}")
                .route(web::get().to(site_profiles::get))
                .route(web::put().to(site_profiles::put))
                .route(web::delete().to(site_profiles::delete)),
        )
        .service(
            resource("/api/site-profiles/{name}/cookies").route(web::put().to(site_profiles::put_cookies)),
        )
        .service(resource("/api/site-profiles/{name}/check").route(web::post().to(site_profiles::check)))
        .service(
            resource("/api/subscriptions")
                .route(web::get().to(subscriptions::list))
                .route(web::post().to(subscriptions::create)),
        )
        .service(
            resource("/api/subscriptions/{subscription_id}")
                .route(web::get().to(subscriptions::get))
                .route(web::delete().to(subscriptions::delete)),
        )
        .service(
            resource("/api/subscriptions/{subscription_id}/checks")
                .route(web::get().to(subscriptions::checks)),
        )
        .service(
            resource("/api/subscriptions/{subscription_id}/pause")
                .route(web::post().to(subscriptions::pause)),
        )
        .service(
            resource("/api/subscriptions/{subscription_id}/resume")
                .route(web::post().to(subscriptions::resume)),
        )
        .service(
            resource("/api/subscriptions/{subscription_id}/check")
                .route(web::post().to(subscriptions::check)),
        )
        .service(resource("/api/whoami").route(web::get().to(whoami::whoami)))
        .service(resource("/metrics").route(web::get().to(metrics::metrics)))
        .service(resource("/healthz").route(web::get().to(health::healthz)))
        .service(resource("/readyz").route(web::get().to(health::readyz)))
        .configure(crate::openapi::configure)
        .configure(crate::ui::configure);
}

/// A resource for a path of [`ROUTES`], needing the access listed there (checked
/// after routing, before any handler or extractor runs), that answers unknown methods
/// with a JSON 405. Panics on a path that is not listed: every app build (each test)
/// fails until the route is listed, and so documented.
pub(crate) fn resource(
    path: &'static str,
) -> Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = Error,
        InitError = (),
    > + use<>,
> {
    let access = route(path)
        .unwrap_or_else(|| panic!("route {path} is registered but not listed in routes::ROUTES"))
        .access;
    web::resource(path)
        .default_service(web::to(method_not_allowed))
        .wrap(middleware::from_fn(move |req, next| auth::authorize(access, req, next)))
}

/// A [`resource`] that creates something (`Access::Write` in [`ROUTES`]) and honours
/// `Idempotency-Key` (`crates/api/src/idempotency.rs`, which runs after the key check).
pub(crate) fn submission(
    path: &'static str,
) -> Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = Error,
        InitError = (),
    > + use<>,
> {
    let listed =
        route(path).unwrap_or_else(|| panic!("route {path} is registered but not listed in routes::ROUTES"));
    assert_eq!(listed.access, Access::Write, "{path}: a submission needs a full key");
    web::resource(path)
        .default_service(web::to(method_not_allowed))
        .wrap(middleware::from_fn(crate::idempotency::idempotent))
        .wrap(middleware::from_fn(|req, next| auth::authorize(Access::Write, req, next)))
}

/// 405 with `Allow` listing the route's methods (RFC 9110 §15.5.6).
pub(crate) async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let mut res =
        ApiError::new(Code::MethodNotAllowed, format!("{} is not allowed on {}", req.method(), req.path()))
            .error_response();
    if let Some(route) = req.match_pattern().as_deref().and_then(route)
        && let Ok(allow) = header::HeaderValue::from_str(&route.allow())
    {
        res.headers_mut().insert(header::ALLOW, allow);
    }
    res
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::new(Code::NotFound, format!("no route for {} {}", req.method(), req.path())).error_response()
}
