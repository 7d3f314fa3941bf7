//! Job handlers, one module per queue, plus what they share.

pub mod download;
mod outcome;
pub mod process;
mod progress;
