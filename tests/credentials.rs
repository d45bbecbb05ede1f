//! simplevisor's own Vault credentials stay out of its jobs' reach: not in the initial
//! environment block that `/proc/<pid>/environ` shows, and not readable at all by a job running
//! as simplevisor's own (non-root) user, as `runAsUser` does on Kubernetes.

mod harness;

use harness::{is_root, require, run, secs, user_exists};

const SECRET_ID: &str = "secret-id-0f3c9a";
const TOKEN: &str = "hvs.token-77e1b2";

/// A job that prints what it can see of its parent's environment block and memory (at the
/// first mapped address, since offset 0 of `/proc/<pid>/mem` is never readable).
const PROBE: &str = r#"
if env=$(tr '\0' '\n' 2>/dev/null < /proc/$PPID/environ); then
    printf '%s\n' "$env" | grep '^VAULT_' | sed 's/^/environ: /'
else
    echo environ-denied
fi
start=$(head -n 1 /proc/$PPID/maps 2>/dev/null | cut -d- -f1)
n=0
if [ -n "$start" ]; then
    n=$(dd if=/proc/$PPID/mem iflag=skip_bytes skip=$((0x$start)) bs=16 count=1 status=none 2>/dev/null | wc -c)
fi
if [ "$n" -gt 0 ]; then echo mem-readable; else echo mem-denied; fi
"#;

fn config() -> String {
    serde_json::json!({"jobs": {"main": [
        {"name": "probe", "cmd": ["sh", "-c", PROBE], "restart": "never"}
    ]}})
    .to_string()
}

#[test]
fn credential_values_are_blanked_in_the_environment_block() {
    if !require("root (to read a non-dumpable process's environ)", is_root()) {
        return;
    }
    let config = config();
    let mut sv = run(&config)
        .clear_env()
        .env("VAULT_SECRET_ID", SECRET_ID)
        .env("VAULT_TOKEN", TOKEN)
        .env("VAULT_ROLE_ID", "role-id-4411")
        .env("VAULT_ADDR", "http://127.0.0.1:1")
        .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 0, "{}", sv.dump());
    let seen = sv.messages("probe");
    for name in ["VAULT_SECRET_ID", "VAULT_TOKEN", "VAULT_ROLE_ID"] {
        assert!(
            seen.contains(&format!("environ: {name}=")),
            "{name} not blanked: {seen:?}"
        );
    }
    // Not a credential: left alone.
    assert!(seen.contains(&"environ: VAULT_ADDR=http://127.0.0.1:1".to_string()));
    let everything = sv.dump();
    for secret in [SECRET_ID, TOKEN, "role-id-4411"] {
        assert!(
            !everything.contains(secret),
            "{secret} visible:\n{everything}"
        );
    }
}

#[test]
fn a_job_of_the_same_user_cannot_read_our_environment_or_memory() {
    if !require(
        "root and the svtest user (scripts/setup)",
        is_root() && user_exists("svtest"),
    ) {
        return;
    }
    let config = config();
    let mut sv = run(&config)
        .clear_env()
        .env("VAULT_SECRET_ID", SECRET_ID)
        .wrapped(&[
            "setpriv",
            "--reuid=svtest",
            "--regid=svtest",
            "--clear-groups",
            "--",
        ])
        .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 0, "{}", sv.dump());
    assert_eq!(sv.messages("probe"), ["environ-denied", "mem-denied"]);
}
