//! Worker names: unique per process start (and per restart), so a restarted
//! worker never collides with its dead predecessor's registration and orphan
//! recovery can tell them apart (apalis-redis keys a worker's registration and
//! its in-flight jobs by name).

use mediapro_core::task::TaskKind;

pub fn worker_name(queue: TaskKind) -> String {
    let host =
        nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "host".into());
    format!("{host}-{}-{}-{}", std::process::id(), queue.as_str(), ulid::Ulid::generate())
}
