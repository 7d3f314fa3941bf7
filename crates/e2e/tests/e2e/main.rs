//! End-to-end tests: the real API (on port 0) and worker (in-process), real Redis,
//! a temporary SQLite store and storage root, real yt-dlp and ffmpeg, and a local
//! HTTP server serving clips made with ffmpeg. Nothing here reaches the internet.

// The tests start worker binaries, ffmpeg (to make fixtures) and redis-server
// themselves: they are the harness, not the service, whose processes all go
// through `mediapro_core::process::run` (clippy.toml).
#![allow(clippy::disallowed_methods)]

mod helpers;

mod abuse;
mod auth;
mod browser;
mod collections;
mod compat;
mod download;
mod egress;
mod errors;
mod events;
mod faults;
mod idempotency;
pub mod lifecycle;
mod metrics;
mod processing;
mod site_gate;
pub mod site_profiles;
mod subscriptions;
mod validation;
mod wake;
mod warm_host;
mod webhooks;
