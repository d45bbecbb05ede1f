//! Keeping simplevisor's own Vault credentials from its jobs (a job running as the same user
//! could otherwise read them from `/proc/<our pid>/environ` or `/proc/<our pid>/mem`).
//!
//! Two steps, both before any job exists: become non-dumpable, which makes our `/proc` files
//! root-owned and refuses `ptrace` access to same-user processes; and overwrite the credential
//! values in the initial environment block, which is what `/proc/<pid>/environ` shows. The
//! values themselves live on in our heap (the copy [`process_environment`] made), which the
//! non-dumpable flag protects.
//!
//! [`process_environment`]: crate::environment::process_environment

use std::ffi::CStr;

use crate::environment::CREDENTIALS;

/// `prctl(PR_SET_DUMPABLE, 0)`. Jobs are not affected: `execve` resets the flag.
pub fn make_non_dumpable() -> Result<(), String> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(format!(
            "cannot make simplevisor non-dumpable (prctl PR_SET_DUMPABLE): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

unsafe extern "C" {
    static mut environ: *mut *mut libc::c_char;
}

/// Overwrites, in place, the value of every credential variable in the process's environment
/// block with NUL bytes: `std::env::set_var`/`remove_var` would only repoint `environ` and
/// leave the original bytes where `/proc/<pid>/environ` reads them.
///
/// Must run while this is the only thread (nothing else may read the environment meanwhile),
/// after [`process_environment`](crate::environment::process_environment) took its copy.
pub fn blank_credentials_in_environ() {
    // SAFETY: `environ` is a NULL-terminated array of NUL-terminated strings owned by the
    // process; we only overwrite bytes inside those strings, after the `=`, and no other thread
    // exists yet to read them concurrently.
    unsafe {
        let mut entry = environ;
        if entry.is_null() {
            return;
        }
        while !(*entry).is_null() {
            let bytes = CStr::from_ptr(*entry).to_bytes();
            if let Some(eq) = bytes.iter().position(|&b| b == b'=') {
                let name = &bytes[..eq];
                if CREDENTIALS.iter().any(|c| c.as_bytes() == name) {
                    let value = (*entry).add(eq + 1);
                    std::ptr::write_bytes(value, 0, bytes.len() - eq - 1);
                }
            }
            entry = entry.add(1);
        }
    }
}
