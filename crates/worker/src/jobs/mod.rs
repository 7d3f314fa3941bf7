//! Job handlers, one module per queue, plus what they share.

mod attempt;
pub mod download;
mod fsutil;
mod outcome;
mod pipeline;
pub mod process;
