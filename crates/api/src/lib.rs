//! `mediapro-api`: the HTTP face of MediaPro. It validates requests (through
//! `mediapro-core`), records tasks in the store, queues jobs and serves results;
//! it never runs a download or ffmpeg itself (analyze is the one synchronous
//! yt-dlp call).

mod assets;
mod auth;
mod body_deadline;
mod error;
mod idempotency;
mod limits;
mod openapi;
mod routes;
mod startup;
mod state;
mod ui;

pub use error::ApiError;
pub use openapi::document as openapi_document;
pub use startup::{Application, StartupError};
