//! The one owner of "may the service connect here?".
//!
//! Checking only the URL a user submits is not enough: redirects, `<video><source>`
//! and subtitle URLs, HLS segments and DNS rebinding all lead yt-dlp and ffmpeg to
//! addresses nobody checked. So every outbound connection goes through
//! [`EgressGuard::connect`], which resolves the host once, refuses if any address is
//! not allowed by the [`EgressPolicy`] and connects to exactly the address it checked.
//!
//! yt-dlp and ffmpeg reach the guard through a small forward proxy on 127.0.0.1, one
//! per job ([`EgressGuard::start_proxy`]), passed as `--proxy`; the job reads its own
//! refusals from the [`ProxyHandle`] to explain why it failed.

mod guard;
mod proxy;
mod resolve;

pub use guard::{EgressError, EgressGuard};
pub use mediapro_core::validate::{BlockReason, Blocked, EgressPolicy};
pub use proxy::{PROXY_STATUS, ProxyHandle, Refusal};
pub use resolve::{BoxFuture, Resolve, SystemResolver};
