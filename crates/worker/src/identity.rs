//! Worker names: unique per process start (and per restart), so a restarted
//! worker never collides with its dead predecessor's registration and orphan
//! recovery can tell them apart (apalis-redis keys a worker's registration and
//! its in-flight jobs by name). The same shape names a process's claim on a
//! role lease (the subscription scheduler).

use mediapro_core::task::TaskKind;

pub fn worker_name(queue: TaskKind) -> String {
    name(queue.as_str())
}

/// `host-pid-<role>-<ulid>`: who holds a role's lease (`mediapro_queue::RoleLease`).
pub fn holder_name(role: &str) -> String {
    name(role)
}

fn name(what: &str) -> String {
    let host =
        nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "host".into());
    format!("{host}-{}-{what}-{}", std::process::id(), ulid::Ulid::generate())
}
