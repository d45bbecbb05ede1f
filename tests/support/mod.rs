//! Test fixtures with real components: an OpenBao dev server (plain HTTP, `-dev-tls`, or HTTPS
//! with certificates the test makes, see `pki`), a throwaway PostgreSQL, a small HTTP front
//! that forwards to OpenBao, answers only the AWS secrets engine OpenBao lacks, and can play a
//! broken Vault (503) while counting requests, and a Kubernetes TokenReview stub (`kube`).
//!
//! Shared by the in-crate tests (`src/vault/tests.rs`) and `tests/vault.rs`. Every process
//! started here is stopped by its pid when its fixture is dropped.
#![allow(dead_code)]

pub mod bao;
pub mod front;
pub mod kube;
pub mod pki;
pub mod postgres;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

// The harness's rule and its wait, included here too for the crates (and in-crate tests)
// without the harness.
#[path = "../harness/prerequisite.rs"]
#[allow(clippy::duplicate_mod)]
mod prerequisite;
#[path = "../harness/wait.rs"]
#[allow(clippy::duplicate_mod)]
mod wait;
#[allow(unused_imports)]
pub use wait::wait_until;

/// Why a fixture cannot run here: fails under `CI=true`, else says it is skipped.
pub fn skip(reason: &str) {
    prerequisite::require(reason, false);
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("no free port on 127.0.0.1")
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "sv-{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("cannot create a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
