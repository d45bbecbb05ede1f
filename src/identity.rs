//! `run-as`: parsing `"user"`, `"user:group"` and numeric ids, resolved against `/etc/passwd`
//! and `/etc/group`, which we read ourselves (no NSS: the binary is static and may run in an
//! empty `FROM scratch` root with just those two files).

use std::path::{Path, PathBuf};

/// The identity a job runs as, fully resolved before anything is spawned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups as `initgroups` computes them: `gid` plus every group that lists
    /// the user; just `gid` for a numeric user without a passwd entry.
    pub groups: Vec<u32>,
    /// The user's name, or the numeric uid as text when it has no passwd entry (for `USER`,
    /// `LOGNAME`).
    pub user: String,
    /// From `/etc/passwd`; `/` for a numeric id without an entry.
    pub home: String,
}

/// The user and group databases, read once.
#[derive(Debug, Clone, Default)]
pub struct UserDb {
    // filled in by the implementation
}

impl UserDb {
    /// Reads `<etc>/passwd` and `<etc>/group`. A missing file is an empty database (numeric ids
    /// still work), any other read error is returned.
    pub fn load(etc: &Path) -> std::io::Result<UserDb> {
        let _ = etc;
        todo!()
    }

    /// The system databases under `/etc`.
    pub fn system() -> std::io::Result<UserDb> {
        Self::load(&PathBuf::from("/etc"))
    }

    /// Resolves a `run-as` value. User only ⇒ group `root` (gid 0), as the original documents.
    /// The error says what is wrong in one sentence (used after the JSON path).
    pub fn resolve(&self, run_as: &str) -> Result<Identity, String> {
        let _ = run_as;
        todo!()
    }
}
