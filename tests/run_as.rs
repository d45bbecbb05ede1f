//! `run-as` with a real unprivileged user and groups (created by scripts/setup): the identity
//! drop, supplementary groups, and HOME / USER / LOGNAME.

mod harness;

use harness::{is_root, require, run, secs, user_exists};

fn id_of(args: &[&str]) -> String {
    let out = std::process::Command::new("id")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const PROBE: &str = r#"["sh", "-c", "echo uid=$(id -u) gid=$(id -g) groups=$(id -G | tr ' ' '\\n' | sort -n | tr '\\n' ' ')home=$HOME user=$USER logname=$LOGNAME"]"#;

#[test]
fn jobs_run_as_named_and_numeric_users_with_their_groups() {
    if !require(
        "root and the svtest user",
        is_root() && user_exists("svtest"),
    ) {
        return;
    }
    let uid = id_of(&["-u", "svtest"]);
    let gid = id_of(&["-g", "svtest"]);
    let extra = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("svextra:"))
        .and_then(|l| l.split(':').nth(2).map(str::to_string))
        .expect("svextra group");
    let config = format!(
        r#"{{"jobs": {{"main": [
            {{"name": "named", "cmd": {PROBE}, "run-as": "svtest:svtest", "restart": "never"}},
            {{"name": "user-only", "cmd": {PROBE}, "run-as": "svtest", "restart": "never"}},
            {{"name": "numeric", "cmd": {PROBE}, "run-as": "4321:4322", "restart": "never"}}
        ]}}, "env": {{"pass": ["PATH", "HOME", "USER"]}}}}"#
    );
    let mut sv = run(&config)
        .arg("--no-vault")
        .env("HOME", "/root")
        .env("USER", "root")
        .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 0, "{}", sv.dump());
    let mut named_groups = [gid.parse::<u32>().unwrap(), extra.parse().unwrap()];
    named_groups.sort();
    assert_eq!(
        sv.messages("named"),
        [format!(
            "uid={uid} gid={gid} groups={} {} home=/nonexistent/svtest user=svtest logname=svtest",
            named_groups[0], named_groups[1]
        )]
    );
    // User only: group root, as the original documents; supplementary groups still include
    // the groups that list the user.
    assert_eq!(
        sv.messages("user-only"),
        [format!(
            "uid={uid} gid=0 groups=0 {extra} home=/nonexistent/svtest user=svtest logname=svtest"
        )]
    );
    assert_eq!(
        sv.messages("numeric"),
        ["uid=4321 gid=4322 groups=4322 home=/ user=4321 logname=4321"]
    );
}

#[test]
fn an_unprivileged_job_cannot_enter_a_root_only_workdir() {
    if !require(
        "root and the svtest user",
        is_root() && user_exists("svtest"),
    ) {
        return;
    }
    let dir = harness::TempDir::new("private");
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = format!(
        r#"{{"jobs": {{"init": [{{"name": "x", "cmd": ["pwd"], "run-as": "svtest:svtest", "workdir": "{}"}}]}}}}"#,
        private.display()
    );
    let mut sv = run(&config).arg("--no-vault").start();
    assert_eq!(sv.wait_exit(secs(10.0)), 1);
    let internal = sv.messages("internal").join("\n");
    assert!(
        internal.contains(&format!(
            "job x could not be started: changing to workdir {} failed: Permission denied",
            private.display()
        )),
        "{internal}"
    );
    assert!(sv.messages("x").is_empty());
}
