//! MediaPro's domain: what a task is, how requests are validated, how yt-dlp and
//! ffmpeg are invoked (as argument vectors) and how their output is read, and the
//! durable task store. Nothing here speaks HTTP or runs a queue: the `api` and
//! `worker` binaries do, on top of these types.

pub mod analyze;
pub mod body;
pub mod error;
pub mod ffmpeg;
pub mod jobs;
pub mod metrics;
pub mod process;
pub mod requests;
pub mod retry;
pub mod settings;
pub mod site_profile;
pub mod storage;
pub mod store;
pub mod subscription;
pub mod task;
pub mod telemetry;
pub mod validate;
pub mod view;
pub mod webhooks;
pub mod ytdlp;

pub use error::{Code, ErrorClass, HasCode};
pub mod zip;
