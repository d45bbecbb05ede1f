//! simplevisor as a library: the modules behind the `simplevisor` binary (`src/main.rs`).
//!
//! The binary is the product; the library exists so that the fuzz targets (`fuzz/`) and the
//! benchmarks can drive the pure parts (config loading, references, templates, log framing and
//! encoding) directly.

pub mod check;
pub mod cli;
pub mod config;
pub mod control;
pub mod environment;
pub mod files;
pub mod identity;
pub mod logs;
pub mod mailbox;
pub mod metrics;
pub mod quote;
pub mod signals;
pub mod spawn;
pub mod startup;
pub mod stdout;
pub mod supervisor;
pub mod template;
pub mod time;
pub mod vault;
