//! End-to-end tests: the real API (on port 0) and worker (in-process), real Redis,
//! a temporary SQLite store and storage root, real yt-dlp and ffmpeg, and a local
//! HTTP server serving clips made with ffmpeg. Nothing here reaches the internet.

mod helpers;

mod compat;
mod download;
mod errors;
mod faults;
pub mod lifecycle;
mod processing;
mod validation;
