//! The static release binary (`scripts/build-static`, run by `scripts/test`) in an empty root
//! that holds only the binary, its config, `/etc/passwd` and `/etc/group` — a `FROM scratch`
//! image in all but name: it runs jobs with named and numeric `run-as`.

mod harness;

use std::path::Path;
use std::process::Command;

use harness::{TempDir, has_interpreter, is_root, require, static_binary};
use serde_json::Value;

/// `chroot <root> /simplevisor --no-vault` with an empty environment: its output and stdout.
fn run_in(root: &Path) -> (std::process::Output, String) {
    let out = Command::new("/usr/sbin/chroot")
        .arg(root)
        .args(["/simplevisor", "--no-vault"])
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

#[test]
fn the_static_binary_runs_jobs_in_an_empty_root() {
    let binary = static_binary();
    if !require(
        "root (for chroot) and the static binary (scripts/build-static)",
        is_root() && binary.exists(),
    ) {
        return;
    }
    let elf = std::fs::read(&binary).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    assert!(!has_interpreter(&elf), "the binary needs a dynamic loader");

    let root = TempDir::new("scratch");
    std::fs::copy(&binary, root.path().join("simplevisor")).unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    // What a container runtime provides in /dev, as far as simplevisor needs it.
    std::fs::create_dir(root.path().join("dev")).unwrap();
    let null = std::ffi::CString::new(root.path().join("dev/null").to_str().unwrap()).unwrap();
    // SAFETY: mknod of a character device at a path we own; makedev(1, 3) is /dev/null.
    assert_eq!(
        unsafe { libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) },
        0
    );
    root.write(
        "etc/passwd",
        "root:x:0:0:root:/root:/sbin/nologin\napp:x:1000:1000::/home/app:/sbin/nologin\n",
    );
    root.write("etc/group", "root:x:0:\napp:x:1000:\n");
    // The nested supervisor runs as an unprivileged user: its job asking for root must fail
    // with the reason, which proves the identity drop happened.
    root.write(
        "nested.json",
        r#"{"jobs": {"init": [{"name": "escalate", "cmd": ["/simplevisor", "--version"], "run-as": "0:0"}]}}"#,
    );
    // No --config: simplevisor.json next to the binary is the default.
    root.write(
        "simplevisor.json",
        r#"{"jobs": {"main": [
            {"name": "named", "cmd": ["/simplevisor", "--version"], "run-as": "app:app", "restart": "never"},
            {"name": "numeric", "cmd": ["/simplevisor", "--version"], "run-as": "2000:2000", "restart": "never"},
            {"name": "nested", "cmd": ["/simplevisor", "--config", "/nested.json", "--no-vault"],
             "run-as": "1000:1000", "log-format": "json", "restart": "never"}
        ]}}"#,
    );
    let (out, stdout) = run_in(root.path());
    let records: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |name: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| r["process"] == name)
            .map(|r| &r["message"])
            .collect()
    };
    let version = format!("simplevisor {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(of("named"), [&Value::String(version.clone())], "{stdout}");
    assert_eq!(of("numeric"), [&Value::String(version)], "{stdout}");
    let nested: Vec<String> = of("nested")
        .iter()
        .filter_map(|m| m["message"].as_str().map(str::to_string))
        .collect();
    assert!(
        nested.iter().any(|m| m.contains(
            "job escalate could not be started: setgroups([0]) failed: Operation not permitted"
        )),
        "{stdout}"
    );
    // The nested supervisor exits 1 (its init job failed); the outer reports all that and, with
    // one main job failed, exits 1 as well.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let internal = of("internal")
        .iter()
        .filter_map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        internal.contains("job named exited with status 0"),
        "{internal}"
    );
    assert!(
        internal.contains("job numeric exited with status 0"),
        "{internal}"
    );
    assert!(
        internal.contains("job nested exited with status 1"),
        "{internal}"
    );

    // Without /dev/null (a bare chroot, not a container) the reason is named, not disguised.
    std::fs::remove_file(root.path().join("dev/null")).unwrap();
    let (_, stdout) = run_in(root.path());
    assert!(
        stdout.contains("job named could not be started: cannot open /dev/null for the job's stdin: No such file or directory"),
        "{stdout}"
    );
}
