//! Starting one job: fork/exec with the hygiene of SPEC 5 — a new session, `/dev/null` stdin,
//! stdout/stderr pipes, no other file descriptor, an empty signal mask, default dispositions,
//! then the identity drop (supplementary groups, gid, uid) and the working directory.
//!
//! Everything the child needs is prepared before `fork`: between `fork` and `exec` only
//! async-signal-safe libc calls run (DESIGN trap 1). When a step fails there, the child writes
//! the step's number to a close-on-exec pipe, so the parent can say *which* step failed.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::identity::Identity;

/// Used when neither the job nor simplevisor has a `PATH` (as execvp does).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to start.
pub struct SpawnRequest<'a> {
    pub cmd: &'a [String],
    /// The job's complete environment.
    pub env: &'a [(String, String)],
    pub identity: Option<&'a Identity>,
    pub workdir: Option<&'a Path>,
}

/// A started job: its pid (also its process group and session id) and the read ends of its
/// output pipes, non-blocking.
pub struct Spawned {
    pub pid: i32,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Why a job could not be started, with the status a shell would give (127: not found,
/// 126: found but not executable, or any other failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnError {
    pub reason: String,
    pub status: i32,
}

/// The steps between `fork` and `exec`; the number is what the child reports.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Step {
    SignalMask = 1,
    Session,
    Groups,
    Gid,
    Uid,
    Workdir,
}

impl Step {
    fn from_byte(byte: u8) -> Option<Step> {
        [
            Step::SignalMask,
            Step::Session,
            Step::Groups,
            Step::Gid,
            Step::Uid,
            Step::Workdir,
        ]
        .into_iter()
        .find(|s| *s as u8 == byte)
    }

    fn describe(self, request: &SpawnRequest<'_>) -> String {
        let id = request.identity;
        match self {
            Step::SignalMask => "resetting the signal mask".into(),
            Step::Session => "setsid".into(),
            Step::Groups => format!(
                "setgroups({:?})",
                id.map(|i| i.groups.clone()).unwrap_or_default()
            ),
            Step::Gid => format!("setgid({})", id.map_or(0, |i| i.gid)),
            Step::Uid => format!("setuid({})", id.map_or(0, |i| i.uid)),
            Step::Workdir => format!(
                "changing to workdir {}",
                request.workdir.unwrap_or(Path::new(".")).display()
            ),
        }
    }
}

/// Starts the job. Never leaves a half-started child: either the job runs with exactly the
/// identity asked for, or nothing runs and the error says why.
pub fn spawn(request: &SpawnRequest<'_>) -> Result<Spawned, SpawnError> {
    let Some(program_name) = request.cmd.first() else {
        return Err(SpawnError {
            reason: "empty cmd".into(),
            status: 127,
        });
    };
    let program = resolve_program(program_name, request.env)?;
    let workdir = match request.workdir {
        Some(dir) => Some(
            CString::new(dir.as_os_str().as_bytes()).map_err(|_| SpawnError {
                reason: format!("workdir {} contains a NUL byte", dir.display()),
                status: 126,
            })?,
        ),
        None => None,
    };
    let identity = request.identity.map(|id| {
        (
            id.groups
                .iter()
                .map(|&g| g as libc::gid_t)
                .collect::<Vec<_>>(),
            id.gid as libc::gid_t,
            id.uid as libc::uid_t,
        )
    });
    let (report_read, report_write) = nix::unistd::pipe2(
        nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK,
    )
    .map_err(|e| SpawnError {
        reason: format!("cannot create a pipe: {e}"),
        status: 126,
    })?;
    let report_fd = report_write.as_raw_fd();
    // Opened here rather than by std, so that a root without /dev/null (a bare chroot) is
    // reported as what it is, not as a failure to execute the program.
    let dev_null = std::fs::File::open("/dev/null").map_err(|e| SpawnError {
        reason: format!("cannot open /dev/null for the job's stdin: {e}"),
        status: 126,
    })?;

    let mut command = Command::new(&program);
    command
        .arg0(program_name)
        .args(&request.cmd[1..])
        .env_clear()
        .envs(request.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::from(dev_null))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions on data prepared above; it allocates nothing.
    unsafe {
        command.pre_exec(move || child_setup(report_fd, identity.as_ref(), workdir.as_deref()));
    }
    let result = command.spawn();
    drop(report_write);
    let mut child = match result {
        Ok(child) => child,
        Err(error) => return Err(start_failure(request, &program, &report_read, &error)),
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        // Unreachable with Stdio::piped(); kill rather than leave an unsupervised child.
        let _ = child.kill();
        return Err(SpawnError {
            reason: "the output pipes were not created".into(),
            status: 126,
        });
    };
    let stdout = OwnedFd::from(stdout);
    let stderr = OwnedFd::from(stderr);
    for fd in [&stdout, &stderr] {
        prepare_read_end(fd);
    }
    // The supervisor reaps with waitpid(-1); std's Child is dropped without waiting.
    let pid = child.id() as i32;
    Ok(Spawned {
        pid,
        stdout,
        stderr,
    })
}

/// The kernel's `struct sigaction` on x86_64 (not libc's, whose layout differs).
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: libc::c_ulong,
    mask: u64,
}

/// The child side, between fork and exec. Every call here is async-signal-safe.
fn child_setup(
    report_fd: libc::c_int,
    identity: Option<&(Vec<libc::gid_t>, libc::gid_t, libc::uid_t)>,
    workdir: Option<&std::ffi::CStr>,
) -> io::Result<()> {
    let fail = |step: Step| {
        let error = io::Error::last_os_error();
        let byte = step as u8;
        // SAFETY: write(2) of one byte from a live stack variable.
        unsafe { libc::write(report_fd, (&raw const byte).cast(), 1) };
        error
    };
    // SAFETY: plain libc calls on valid, initialised arguments; see each comment.
    unsafe {
        // Signals blocked for the signalfd would stay blocked across exec (DESIGN trap 1).
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            return Err(fail(Step::SignalMask));
        }
        // Ignored dispositions (SIGPIPE, SIGTTIN, ...) survive exec; reset every one. The raw
        // syscall, because glibc's sigaction refuses its internal signals 32 and 33, which a
        // parent may have left ignored too. KILL and STOP refuse, which is fine.
        let default = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        for signo in 1..65 {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signo,
                &raw const default,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
        if libc::setsid() < 0 {
            return Err(fail(Step::Session));
        }
        if let Some((groups, gid, uid)) = identity {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                return Err(fail(Step::Groups));
            }
            if libc::setgid(*gid) != 0 {
                return Err(fail(Step::Gid));
            }
            if libc::setuid(*uid) != 0 {
                return Err(fail(Step::Uid));
            }
        }
        // After the identity drop, so the job's user must be able to enter the directory.
        if let Some(dir) = workdir
            && libc::chdir(dir.as_ptr()) != 0
        {
            return Err(fail(Step::Workdir));
        }
        // No descriptor beyond 0-2 may reach the job, including any simplevisor inherited
        // without close-on-exec. Marking them close-on-exec (rather than closing) keeps std's
        // own exec-error pipe working. Kernels before 5.11 lack the flag: fall back to a loop.
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            for fd in 3..4096 {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

fn start_failure(
    request: &SpawnRequest<'_>,
    program: &Path,
    report: &OwnedFd,
    error: &io::Error,
) -> SpawnError {
    let mut byte = [0u8; 1];
    let step = match nix::unistd::read(report, &mut byte) {
        Ok(1) => Step::from_byte(byte[0]),
        _ => None,
    };
    match step {
        Some(step) => SpawnError {
            reason: format!("{} failed: {error}", step.describe(request)),
            status: 126,
        },
        None => SpawnError {
            reason: format!("cannot execute {}: {error}", program.display()),
            status: if error.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            },
        },
    }
}

/// `cmd[0]` as given when it contains a `/`, else the first executable file of that name in
/// the job's `PATH` (or simplevisor's own when the job has none).
fn resolve_program(name: &str, env: &[(String, String)]) -> Result<PathBuf, SpawnError> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let own_path = std::env::var_os("PATH");
    let path: &OsStr = match env.iter().find(|(k, _)| k == "PATH") {
        Some((_, v)) => OsStr::new(v.as_str()),
        None => own_path.as_deref().unwrap_or(OsStr::new(DEFAULT_PATH)),
    };
    let mut found_not_executable = None;
    for dir in std::env::split_paths(path) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        let candidate = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
        {
            if meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
            found_not_executable.get_or_insert(candidate);
        }
    }
    Err(match found_not_executable {
        Some(candidate) => SpawnError {
            reason: format!("{} is not executable", candidate.display()),
            status: 126,
        },
        None => SpawnError {
            reason: format!(
                "{name}: command not found in PATH {}",
                path.to_string_lossy()
            ),
            status: 127,
        },
    })
}

/// Non-blocking, so one quiet job never stalls the loop. A fresh pipe's read end has no other
/// status flag to keep, so one F_SETFL does; it can only fail on a bad descriptor.
fn prepare_read_end(fd: &OwnedFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
}
