//! Starting one job: clone/exec with the hygiene of docs/behaviour.md — a new session, `/dev/null`
//! stdin, stdout/stderr pipes, no other file descriptor, default dispositions, the identity
//! drop (supplementary groups, gid, uid), the working directory, an empty signal mask.
//!
//! Everything the child needs is prepared before `clone`: between `clone` and `exec` only
//! async-signal-safe system calls run (architecture trap 1). When a step fails there, the child writes
//! the step's number and `errno` to a close-on-exec pipe, so the parent can say *which* step
//! failed.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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
    Stdio = 1,
    SignalMask,
    Session,
    Groups,
    Gid,
    Uid,
    ParentDeath,
    Workdir,
    Exec,
}

impl Step {
    fn from_byte(byte: u8) -> Option<Step> {
        [
            Step::Stdio,
            Step::SignalMask,
            Step::Session,
            Step::Groups,
            Step::Gid,
            Step::Uid,
            Step::ParentDeath,
            Step::Workdir,
            Step::Exec,
        ]
        .into_iter()
        .find(|s| *s as u8 == byte)
    }

    fn describe(self, request: &SpawnRequest<'_>) -> String {
        let id = request.identity;
        match self {
            Step::Stdio => "connecting stdin, stdout and stderr".into(),
            Step::SignalMask => "resetting the signal mask".into(),
            Step::Session => "setsid".into(),
            Step::Groups => format!(
                "setgroups({:?})",
                id.map(|i| i.groups.clone()).unwrap_or_default()
            ),
            Step::Gid => format!("setgid({})", id.map_or(0, |i| i.gid)),
            Step::Uid => format!("setuid({})", id.map_or(0, |i| i.uid)),
            Step::ParentDeath => "setting the parent-death signal (prctl PR_SET_PDEATHSIG)".into(),
            Step::Workdir => format!(
                "changing to workdir {}",
                request.workdir.unwrap_or(Path::new(".")).display()
            ),
            Step::Exec => "exec".into(),
        }
    }
}

/// Starts the job. Never leaves a half-started child: either the job runs with exactly the
/// identity asked for, or nothing runs and the error says why.
pub fn spawn(request: &SpawnRequest<'_>) -> Result<Spawned, SpawnError> {
    match start(request, true)? {
        (pid, Some((stdout, stderr))) => Ok(Spawned {
            pid,
            stdout,
            stderr,
        }),
        (_, None) => Err(SpawnError {
            reason: "internal error: no output pipes".into(),
            status: 126,
        }),
    }
}

/// Like [`spawn`], but the child's stdout and stderr are `/dev/null` (readiness checks, whose
/// output nobody reads). Returns its pid.
pub fn spawn_quiet(request: &SpawnRequest<'_>) -> Result<i32, SpawnError> {
    start(request, false).map(|(pid, _)| pid)
}

/// Starts the child with its output on pipes (returned, read ends) or on `/dev/null`.
fn start(
    request: &SpawnRequest<'_>,
    with_pipes: bool,
) -> Result<(i32, Option<(OwnedFd, OwnedFd)>), SpawnError> {
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
    let exec = ExecArgs::new(&program, request)?;
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SpawnError {
            reason: format!("cannot create a pipe: {e}"),
            status: 126,
        })
    };
    let pipes = if with_pipes {
        Some((pipe()?, pipe()?))
    } else {
        None
    };
    let (report_read, report_write) = pipe()?;
    // Opened here so that a root without /dev/null (a bare chroot) is reported as what it is.
    let dev_null = std::fs::File::open("/dev/null").map_err(|e| SpawnError {
        reason: format!(
            "cannot open /dev/null for the job's stdin: {e}; the root needs a /dev/null device (mknod -m 666 /dev/null c 1 3); container runtimes provide one"
        ),
        status: 126,
    })?;
    // Without pipes (readiness checks), output goes to /dev/null, opened for writing.
    let sink = match pipes {
        Some(_) => None,
        None => Some(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .map_err(|e| SpawnError {
                    reason: format!("cannot open /dev/null for writing: {e}"),
                    status: 126,
                })?,
        ),
    };
    let sink_fd = sink.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    let child_fds = ChildFds {
        stdin: dev_null.as_raw_fd(),
        stdout: pipes
            .as_ref()
            .map_or(sink_fd, |((_, write), _)| write.as_raw_fd()),
        stderr: pipes
            .as_ref()
            .map_or(sink_fd, |(_, (_, write))| write.as_raw_fd()),
        report: report_write.as_raw_fd(),
    };
    let child = ChildArgs {
        parent: std::process::id() as libc::pid_t,
        fds: &child_fds,
        identity: identity.as_ref(),
        workdir: workdir.as_deref(),
        exec: &exec,
    };
    // Every signal blocked across the clone, as posix_spawn does: no handler of ours (std's
    // stack-overflow handler, say) may run in the child while it shares our memory. The child
    // unblocks everything just before exec.
    let all_blocked = block_all_signals();
    let cloned = clone_vfork(&child);
    restore_signal_mask(all_blocked);
    let pid = cloned.map_err(|e| SpawnError {
        reason: format!("cannot create a process (clone): {e}"),
        status: 126,
    })?;
    let read_ends = pipes.map(|((stdout, _), (stderr, _))| (stdout, stderr));
    drop((report_write, dev_null, sink));
    // The report pipe closes on exec (success) or carries the failed step and errno.
    if let Some((step, errno)) = read_report(&report_read) {
        reap_failed_child(pid);
        return Err(start_failure(request, &program, step, errno));
    }
    if let Some((stdout, stderr)) = &read_ends {
        prepare_read_end(stdout);
        prepare_read_end(stderr);
    }
    Ok((pid, read_ends))
}

/// argv and envp as C needs them, built before `fork` (the child must not allocate).
struct ExecArgs {
    program: CString,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
}

impl ExecArgs {
    fn new(program: &Path, request: &SpawnRequest<'_>) -> Result<ExecArgs, SpawnError> {
        let nul = |what: &str| SpawnError {
            reason: format!("{what} contains a NUL byte"),
            status: 126,
        };
        let program = CString::new(program.as_os_str().as_bytes()).map_err(|_| nul("cmd[0]"))?;
        let argv = request
            .cmd
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(|_| nul("cmd")))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = request
            .env
            .iter()
            .map(|(k, v)| {
                CString::new(format!("{k}={v}")).map_err(|_| nul(&format!("variable {k}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let terminated = |list: &[CString]| {
            list.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        Ok(ExecArgs {
            argv_ptrs: terminated(&argv),
            envp_ptrs: terminated(&envp),
            program,
            _argv: argv,
            _envp: envp,
        })
    }
}

/// Everything the child reads, behind one pointer for `clone`.
struct ChildArgs<'a> {
    /// Our pid, to tell whether we died before the parent-death signal was set.
    parent: libc::pid_t,
    fds: &'a ChildFds,
    identity: Option<&'a (Vec<libc::gid_t>, libc::gid_t, libc::uid_t)>,
    workdir: Option<&'a std::ffi::CStr>,
    exec: &'a ExecArgs,
}

/// The child's own stack: it only makes system calls, but give it room.
const CHILD_STACK: usize = 64 * 1024;

/// Starts the child the way posix_spawn does: `clone(CLONE_VM | CLONE_VFORK)` on a stack of its
/// own. Sharing our memory instead of copying it (fork) makes a start about three times
/// cheaper; we are suspended until the child execs or exits, so the shared memory it reads
/// stays put.
fn clone_vfork(child: &ChildArgs<'_>) -> io::Result<i32> {
    extern "C" fn entry(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `ChildArgs` the parent passed, alive while it is suspended.
        let child = unsafe { &*(arg as *const ChildArgs<'_>) };
        child_main(
            child.parent,
            child.fds,
            child.identity,
            child.workdir,
            child.exec,
        )
    }
    // Allocated, never initialised: the child touches only the few pages it uses.
    let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK);
    // SAFETY: the stack pointer is the 16-byte aligned top of a live buffer that outlives the
    // child's use of it (CLONE_VFORK returns only after exec or exit); `entry` never returns
    // into Rust frames of ours and touches only what `child` points to.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(CHILD_STACK);
        let top = top.sub(top as usize % 16);
        libc::clone(
            entry,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (child as *const ChildArgs<'_>).cast_mut().cast(),
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// Blocks every signal in this thread; returns the mask to restore.
fn block_all_signals() -> Option<libc::sigset_t> {
    // SAFETY: sigfillset and pthread_sigmask on local, initialised sigset_t values.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        (libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) == 0).then_some(old)
    }
}

fn restore_signal_mask(old: Option<libc::sigset_t>) {
    if let Some(old) = old {
        // SAFETY: restoring a mask pthread_sigmask returned.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    }
}

/// The descriptors the child wires up: stdin, stdout, stderr, and the failure report pipe.
struct ChildFds {
    stdin: libc::c_int,
    stdout: libc::c_int,
    stderr: libc::c_int,
    report: libc::c_int,
}

/// Reads the child's failure report: `None` once exec closed the pipe.
fn read_report(report: &OwnedFd) -> Option<(Step, i32)> {
    let mut buf = [0u8; 5];
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(report, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    if got < buf.len() {
        return None;
    }
    let errno = i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]);
    Some((Step::from_byte(buf[0]).unwrap_or(Step::Exec), errno))
}

/// A child that failed before exec has exited (or is about to): reap it here, so the event
/// loop never mistakes it for an orphan.
fn reap_failed_child(pid: i32) {
    loop {
        // SAFETY: waitpid on our own child.
        let rc = unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        if rc >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

// The raw signal system calls below use the kernel's own layouts, which this file knows for
// these two targets only.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("spawn.rs knows the kernel's struct sigaction for x86_64 and aarch64 only");

/// The kernel's number of signals (`_NSIG`) on x86_64 and aarch64: 1..=64.
const KERNEL_NSIG: libc::c_int = 64;
/// The kernel's `sigset_t`, one bit per signal: what `rt_sigaction`/`rt_sigprocmask` take.
type KernelSigset = u64;
const KERNEL_SIGSET_SIZE: usize = std::mem::size_of::<KernelSigset>();

/// The kernel's `struct sigaction` (not libc's, whose layout differs), the same on x86_64 and
/// aarch64: both define `SA_RESTORER`, so the restorer field sits before the mask.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: libc::c_ulong,
    mask: KernelSigset,
}

/// The child side, between clone and exec: every call here is async-signal-safe, nothing
/// allocates, and it never returns. It shares our memory, so it writes none of it, and it
/// changes credentials with raw system calls: glibc's `setuid` would, believing the process
/// multi-threaded, try to change our other threads' credentials too.
fn child_main(
    parent: libc::pid_t,
    fds: &ChildFds,
    identity: Option<&(Vec<libc::gid_t>, libc::gid_t, libc::uid_t)>,
    workdir: Option<&std::ffi::CStr>,
    exec: &ExecArgs,
) -> ! {
    let fail = |step: Step| -> ! {
        // SAFETY: errno, write(2) of a stack buffer, and _exit(2).
        unsafe {
            let errno = *libc::__errno_location();
            let mut report = [step as u8, 0, 0, 0, 0];
            report[1..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(fds.report, report.as_ptr().cast(), report.len());
            libc::_exit(127)
        }
    };
    // SAFETY: plain libc calls on valid, initialised arguments; see each comment.
    unsafe {
        // dup2 clears close-on-exec on the new descriptor: exactly these three survive exec.
        if libc::dup2(fds.stdin, 0) < 0
            || libc::dup2(fds.stdout, 1) < 0
            || libc::dup2(fds.stderr, 2) < 0
        {
            fail(Step::Stdio);
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
        for signo in 1..=KERNEL_NSIG {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signo,
                &raw const default,
                std::ptr::null_mut::<KernelSigaction>(),
                KERNEL_SIGSET_SIZE,
            );
        }
        if libc::syscall(libc::SYS_setsid) < 0 {
            fail(Step::Session);
        }
        if let Some((groups, gid, uid)) = identity {
            if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0 {
                fail(Step::Groups);
            }
            if libc::syscall(libc::SYS_setgid, *gid) != 0 {
                fail(Step::Gid);
            }
            if libc::syscall(libc::SYS_setuid, *uid) != 0 {
                fail(Step::Uid);
            }
        }
        // If simplevisor is killed with SIGKILL (not as PID 1, whose death ends the whole
        // namespace), the kernel kills this job's leader. After the identity drop, which clears
        // the setting; then the parent is checked, in case it died before the setting.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            fail(Step::ParentDeath);
        }
        if libc::getppid() != parent {
            libc::_exit(128 + libc::SIGKILL);
        }
        // After the identity drop, so the job's user must be able to enter the directory.
        if let Some(dir) = workdir
            && libc::chdir(dir.as_ptr()) != 0
        {
            fail(Step::Workdir);
        }
        // No descriptor beyond 0-2 may reach the job, including any simplevisor inherited
        // without close-on-exec (the report pipe is close-on-exec already). Kernels before
        // 5.11 lack the flag: fall back to a loop.
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            for fd in 3..4096 {
                if fd != fds.report {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
        }
        // Signals blocked for the signalfd would stay blocked across exec (architecture trap 1).
        // Unblocked last, as posix_spawn does: until here no signal can reach this child.
        let empty: KernelSigset = 0;
        if libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const empty,
            std::ptr::null_mut::<KernelSigset>(),
            KERNEL_SIGSET_SIZE,
        ) != 0
        {
            fail(Step::SignalMask);
        }
        libc::execve(
            exec.program.as_ptr(),
            exec.argv_ptrs.as_ptr(),
            exec.envp_ptrs.as_ptr(),
        );
        fail(Step::Exec)
    }
}

fn start_failure(request: &SpawnRequest<'_>, program: &Path, step: Step, errno: i32) -> SpawnError {
    let error = io::Error::from_raw_os_error(errno);
    match step {
        Step::Exec => SpawnError {
            reason: format!("cannot execute {}: {error}", program.display()),
            status: if errno == libc::ENOENT { 127 } else { 126 },
        },
        step => SpawnError {
            reason: format!("{} failed: {error}", step.describe(request)),
            status: 126,
        },
    }
}

/// `cmd[0]` as given when it contains a `/`, else the first executable file of that name in
/// the job's `PATH` (or simplevisor's own when the job has none).
pub fn resolve_program(name: &str, env: &[(String, String)]) -> Result<PathBuf, SpawnError> {
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
#[cfg(test)]
mod tests {
    use super::*;

    fn env(path: &str) -> Vec<(String, String)> {
        vec![("PATH".to_string(), path.to_string())]
    }

    #[test]
    fn programs_are_looked_up_in_the_jobs_path() {
        assert_eq!(
            resolve_program("sh", &env("/nonexistent:/bin")).unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert_eq!(
            resolve_program("./x", &env("/bin")).unwrap(),
            PathBuf::from("./x")
        );
        let err = resolve_program("no-such-program-here", &env("/bin:/usr/bin")).unwrap_err();
        assert_eq!(err.status, 127);
        assert!(err.reason.contains("not found in PATH /bin:/usr/bin"));
    }

    #[test]
    fn a_missing_binary_is_a_start_failure_with_status_127() {
        let cmd = vec!["/nonexistent/binary".to_string()];
        let err = spawn(&SpawnRequest {
            cmd: &cmd,
            env: &[],
            identity: None,
            workdir: None,
        })
        .err()
        .unwrap();
        assert_eq!(err.status, 127);
        assert!(
            err.reason.contains("cannot execute /nonexistent/binary"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn a_bad_workdir_names_the_step() {
        let cmd = vec!["/bin/true".to_string()];
        let err = spawn(&SpawnRequest {
            cmd: &cmd,
            env: &[],
            identity: None,
            workdir: Some(Path::new("/nonexistent/dir")),
        })
        .err()
        .unwrap();
        assert!(
            err.reason
                .starts_with("changing to workdir /nonexistent/dir failed: No such file"),
            "{}",
            err.reason
        );
    }
}
