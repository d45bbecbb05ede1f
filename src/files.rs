//! The files of `files` (docs/files.md): rendered from their templates with the resolved
//! `vault-replace` values, written atomically, and removed again on every exit.
//!
//! A write never shows a reader part of a file: the content goes to a new file in the same
//! directory, which gets its owner and exact mode before it is renamed over the path. Writing
//! is in two phases, [`prepare`] (every new file written) and [`Prepared::commit`] (all renamed
//! into place), so that when one file cannot be written none is replaced.
//!
//! The directory may be writable by others, so no path is followed blindly: everything happens
//! relative to a descriptor of the directory, the new file is created with `O_EXCL|O_NOFOLLOW`,
//! its mode and owner are set on the descriptor, and a file is removed only while the device
//! and inode at its path are still the ones written.
//!
//! Which files were written is kept here, in one process-wide list, so that the panic hook can
//! remove them as well as the orderly exit ([`remove_all`]). No message ever holds content.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write as _;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat};

use crate::config::FileSpec;
use crate::logs::Logger;

/// A file of ours at a path: removed only while the path still holds this device and inode.
#[derive(Debug, Clone)]
struct Written {
    path: PathBuf,
    device: u64,
    inode: u64,
    at: SystemTime,
}

/// Every file written and not yet removed.
static WRITTEN: Mutex<Vec<Written>> = Mutex::new(Vec::new());

fn written() -> MutexGuard<'static, Vec<Written>> {
    // Each update is one push, replace or drain: the list stays consistent after a panic.
    WRITTEN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A new file written next to its path, not yet renamed into place.
struct Pending {
    path: PathBuf,
    directory: OwnedFd,
    temporary: PathBuf,
    device: u64,
    inode: u64,
}

/// Every new file written; [`commit`](Prepared::commit) renames them into place. Dropped
/// without a commit, it removes them.
pub struct Prepared {
    pending: Vec<Pending>,
}

/// Renders every file with `values` (the resolved `vault-replace` variables) and writes each
/// to a new file in its directory, with its mode and owner. On an error, every new file is
/// removed and nothing is replaced; the error names the path, never content.
pub fn prepare(files: &[FileSpec], values: &BTreeMap<String, String>) -> Result<Prepared, String> {
    let mut prepared = Prepared {
        pending: Vec::with_capacity(files.len()),
    };
    for file in files {
        let content = crate::template::render(&file.template, values).map_err(|_| {
            // The message of a failure with real values could quote one; say only where.
            format!(
                "cannot write {}: its template failed to render with the resolved secrets",
                file.path.display()
            )
        })?;
        let pending = write_new(file, content.as_bytes())
            .map_err(|reason| format!("cannot write {}: {reason}", file.path.display()))?;
        prepared.pending.push(pending);
    }
    Ok(prepared)
}

/// [`prepare`] then [`commit`](Prepared::commit): every file written, or none replaced.
pub fn write_all(files: &[FileSpec], values: &BTreeMap<String, String>) -> Result<(), String> {
    prepare(files, values)?.commit()
}

impl Prepared {
    /// Renames every new file over its path. A rename within one directory fails only when the
    /// path became a directory or the file system broke; the files after it are then left as
    /// they were and the error names the path.
    pub fn commit(mut self) -> Result<(), String> {
        let now = SystemTime::now();
        let mut pending = std::mem::take(&mut self.pending).into_iter();
        while let Some(file) = pending.next() {
            let name = file_name(&file.path);
            if let Err(errno) = renameat(
                file.directory.as_fd(),
                &file.temporary,
                file.directory.as_fd(),
                name,
            ) {
                // The rest are removed when `self` drops.
                self.pending = std::iter::once(file).chain(pending).collect();
                return Err(format!(
                    "cannot write {}: renaming the new file into place failed: {}",
                    self.pending[0].path.display(),
                    errno.desc()
                ));
            }
            let mut list = written();
            list.retain(|w| w.path != file.path);
            list.push(Written {
                path: file.path,
                device: file.device,
                inode: file.inode,
                at: now,
            });
        }
        Ok(())
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        for file in &self.pending {
            let _ = unlinkat(
                file.directory.as_fd(),
                &file.temporary,
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

/// The last component of a validated path (configuration paths always name a file).
fn file_name(path: &Path) -> &OsStr {
    path.file_name().unwrap_or(OsStr::new("."))
}

/// Writes `content` to a new file in the directory of `file.path`, with its mode and owner.
fn write_new(file: &FileSpec, content: &[u8]) -> Result<Pending, String> {
    let dir = file.path.parent().unwrap_or(Path::new("/"));
    let directory = nix::fcntl::open(
        dir,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| match errno {
        Errno::ENOENT => format!("its directory {} does not exist", dir.display()),
        Errno::ENOTDIR => format!("{} is not a directory", dir.display()),
        other => format!(
            "cannot open its directory {}: {}",
            dir.display(),
            other.desc()
        ),
    })?;
    // What is at the path now is replaced by a rename, which cannot replace a directory.
    if let Ok(existing) = fstatat(
        directory.as_fd(),
        file_name(&file.path),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) && is_directory(&existing)
    {
        return Err("a directory is in its place".into());
    }
    let (fd, temporary) = create_temporary(&directory)?;
    let remove = |reason: String| {
        let _ = unlinkat(directory.as_fd(), &temporary, UnlinkatFlags::NoRemoveDir);
        reason
    };
    let uid = file
        .owner
        .as_ref()
        .map_or_else(Uid::effective, |o| Uid::from_raw(o.uid));
    let gid = file
        .owner
        .as_ref()
        .map_or_else(Gid::effective, |o| Gid::from_raw(o.gid));
    let stat = (|| {
        let mut out = std::fs::File::from(fd);
        out.write_all(content)
            .map_err(|error| describe_io(&error))?;
        // Owner first: a change of owner may clear mode bits, the mode must be exact.
        fchown(out.as_fd(), Some(uid), Some(gid)).map_err(|errno| {
            format!(
                "cannot give it to uid {} gid {}: {} (only root may give a file away)",
                uid,
                gid,
                errno.desc()
            )
        })?;
        fchmod(out.as_fd(), Mode::from_bits_truncate(file.mode))
            .map_err(|errno| format!("cannot set its mode: {}", errno.desc()))?;
        // No fsync: a reader sees the rename atomically without it, and the file is removed at
        // exit, so surviving a power loss is not its purpose.
        fstat(out.as_fd()).map_err(|errno| errno.desc().to_string())
    })()
    .map_err(remove)?;
    Ok(Pending {
        path: file.path.clone(),
        directory,
        temporary,
        device: stat.st_dev,
        inode: stat.st_ino,
    })
}

/// A new, empty file no one else can open, under a name nothing else uses: created with
/// `O_EXCL` (never an existing file), `O_NOFOLLOW` (never through a link) and mode 0 (the
/// umask cannot widen it; its mode is set once it is complete).
fn create_temporary(directory: &OwnedFd) -> Result<(OwnedFd, PathBuf), String> {
    let mut attempt = 0u32;
    loop {
        let name = PathBuf::from(format!(
            ".simplevisor-{}-{:x}.tmp",
            std::process::id(),
            unique()
        ));
        match openat(
            directory.as_fd(),
            &name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => return Ok((fd, name)),
            Err(Errno::EEXIST) if attempt < 10 => attempt += 1,
            Err(errno) => return Err(describe_errno(errno)),
        }
    }
}

/// A number that differs between calls and between runs: the clock's nanoseconds mixed with
/// a counter.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    (nanos ^ count.rotate_left(48)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn is_directory(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
}

/// The reasons a file cannot be written, in words that say what to fix.
fn describe_errno(errno: Errno) -> String {
    match errno {
        Errno::EROFS => {
            "the file system is read-only; choose a writable directory (a tmpfs such as /run)"
                .into()
        }
        Errno::ENOSPC | Errno::EDQUOT => "no space left on the file system".into(),
        Errno::EACCES | Errno::EPERM => {
            "permission denied in its directory (simplevisor must be able to create files there)"
                .into()
        }
        other => other.desc().to_string(),
    }
}

fn describe_io(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => describe_errno(Errno::from_raw(code)),
        None => error.kind().to_string(),
    }
}

/// Writes every file before the first job starts, with a record naming them (never content);
/// `false` after logging why one could not be written (then none was).
pub fn write_at_start(
    files: &[FileSpec],
    values: &BTreeMap<String, String>,
    logger: &Logger,
) -> bool {
    if files.is_empty() {
        return true;
    }
    match write_all(files, values) {
        Ok(()) => {
            let paths: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
            logger.info(&format!(
                "wrote {} file(s): {}",
                files.len(),
                paths.join(", ")
            ));
            true
        }
        Err(message) => {
            logger.error(&format!("{message}; no job was started"));
            false
        }
    }
}

/// Removes every file written, with a record of how many and one per failure.
pub fn remove_at_exit(logger: &Logger) {
    let removal = remove_all();
    if removal.removed > 0 {
        logger.info(&format!("removed {} file(s)", removal.removed));
    }
    for failure in removal.failures {
        logger.error(&failure);
    }
}

/// Each file written, with the time it was last written, in the order first written.
pub fn status() -> Vec<(PathBuf, SystemTime)> {
    written().iter().map(|w| (w.path.clone(), w.at)).collect()
}

/// What [`remove_all`] did.
#[derive(Debug, Default)]
pub struct Removal {
    pub removed: usize,
    /// One line per file that could not be removed, naming it.
    pub failures: Vec<String>,
}

/// Removes every file written, and forgets them. A path that no longer holds the file written
/// there (replaced by someone else) is left alone.
pub fn remove_all() -> Removal {
    let list = std::mem::take(&mut *written());
    remove(list)
}

/// [`remove_all`] for the panic hook: does nothing if the list is held (by the panicking
/// thread itself), since waiting could deadlock.
pub fn remove_all_in_panic() -> Option<Removal> {
    let list = match WRITTEN.try_lock() {
        Ok(mut list) => std::mem::take(&mut *list),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => {
            std::mem::take(&mut *poisoned.into_inner())
        }
        Err(std::sync::TryLockError::WouldBlock) => return None,
    };
    Some(remove(list))
}

fn remove(list: Vec<Written>) -> Removal {
    let mut removal = Removal::default();
    for file in list {
        match remove_one(&file) {
            Ok(true) => removal.removed += 1,
            Ok(false) => {}
            Err(reason) => removal
                .failures
                .push(format!("cannot remove {}: {reason}", file.path.display())),
        }
    }
    removal
}

/// `Ok(false)`: the path holds something else now (or nothing), which is not ours to remove.
fn remove_one(file: &Written) -> Result<bool, String> {
    let dir = file.path.parent().unwrap_or(Path::new("/"));
    let directory = match nix::fcntl::open(
        dir,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(false),
        Err(errno) => return Err(errno.desc().to_string()),
    };
    let name = file_name(&file.path);
    match fstatat(directory.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) if stat.st_dev == file.device && stat.st_ino == file.inode => {}
        Ok(_) | Err(Errno::ENOENT) => return Ok(false),
        Err(errno) => return Err(errno.desc().to_string()),
    }
    match unlinkat(directory.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(errno) => Err(errno.desc().to_string()),
    }
}

#[cfg(test)]
mod tests;
