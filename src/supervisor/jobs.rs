//! The shell's record of each job, keyed by the machine's [`JobId`]: its configuration entry
//! and how its environment is made. The machine keeps only what its decisions need
//! ([`JobPolicy`]); everything needed to spawn the job or run its readiness check is here.

use std::borrow::Cow;

use crate::config::{Config, JobSpec};
use crate::environment;

use super::machine::{JobPolicy, ReloadEntry};

/// One job as the shell knows it.
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub spec: JobSpec,
    /// The names of the main jobs it lists in `after` (the spec holds indices into its
    /// config, which change when jobs are added or removed).
    pub after: Vec<String>,
}

impl JobRecord {
    pub fn new(config: &Config, spec: &JobSpec) -> JobRecord {
        JobRecord {
            spec: spec.clone(),
            after: config.after_names(spec),
        }
    }

    /// What the machine needs of it.
    pub fn policy(&self) -> JobPolicy {
        let mut policy = JobPolicy::from_spec(&self.spec);
        policy.after = self.after.clone();
        policy
    }

    /// The environment the job (and its `exec` readiness check) runs with: the shared one,
    /// with `HOME`, `USER` and `LOGNAME` of its `run-as` user.
    pub fn environment<'e>(&self, shared: &'e [(String, String)]) -> Cow<'e, [(String, String)]> {
        match &self.spec.run_as {
            Some(identity) => Cow::Owned(environment::with_identity(
                shared,
                &identity.user,
                &identity.home,
            )),
            None => Cow::Borrowed(shared),
        }
    }

    /// Whether `other` is the same entry, defaults applied: equal in everything but a
    /// `stop-timeout` both take from the top level (a new top-level value applies without a
    /// restart); a default written out is no change.
    pub fn same_entry(&self, other: &JobRecord) -> bool {
        let mut ours = self.spec.clone();
        let mut theirs = other.spec.clone();
        ours.after.clear();
        theirs.after.clear();
        if ours.inherits_stop_timeout && theirs.inherits_stop_timeout {
            theirs.stop_timeout = ours.stop_timeout;
        }
        theirs.inherits_stop_timeout = ours.inherits_stop_timeout;
        ours == theirs && self.after == other.after
    }
}

/// Every job of `config` as records: init jobs, then main jobs, in file order.
pub fn records(config: &Config) -> (Vec<JobRecord>, Vec<JobRecord>) {
    let make = |specs: &[JobSpec]| specs.iter().map(|s| JobRecord::new(config, s)).collect();
    (make(&config.init), make(&config.main))
}

/// The main jobs of a re-read configuration, each marked changed when a running job of the
/// same name has a different entry. `running` finds the running job's record by name.
pub fn reload_entries<'r>(
    new_main: &[JobRecord],
    running: impl Fn(&str) -> Option<&'r JobRecord>,
) -> Vec<ReloadEntry> {
    new_main
        .iter()
        .map(|record| ReloadEntry {
            policy: record.policy(),
            changed: running(&record.spec.name).is_some_and(|old| !old.same_entry(record)),
        })
        .collect()
}

/// The top-level settings a reload cannot apply (they need a new start of simplevisor) that
/// differ between `running` and `new`, by their key in the file.
pub fn settings_needing_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if running.env != new.env {
        keys.push("env");
    }
    if running.vault != new.vault {
        keys.push("vault");
    }
    if running.files != new.files {
        keys.push("files");
    }
    if running.control_socket != new.control_socket {
        keys.push("control-socket");
    }
    if running.metrics_listen != new.metrics_listen {
        keys.push("metrics-listen");
    }
    keys
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::validate::parse;
    use crate::identity::UserDb;

    fn config(text: &str) -> Config {
        match parse(text, Path::new("test.json"), &UserDb::default()) {
            Ok(config) => config,
            Err(error) => panic!("{error}"),
        }
    }

    fn main_record(text: &str) -> JobRecord {
        let config = config(text);
        records(&config).1.remove(0)
    }

    #[test]
    fn every_top_level_setting_a_reload_cannot_apply_is_named() {
        let running = config(r#"{"jobs": {"main": [{"cmd": ["a"]}]}}"#);
        let all = config(
            r#"{"env": {"pass": ["PATH"]}, "vault": {"kv-mount": "other"},
                "files": [{"path": "/run/x", "template": "x"}], "control-socket": "",
                "metrics-listen": "127.0.0.1:9100", "jobs": {"main": [{"cmd": ["a"]}]}}"#,
        );
        assert_eq!(
            settings_needing_restart(&running, &all),
            ["env", "vault", "files", "control-socket", "metrics-listen"]
        );
        // Defaults written out are no change; job settings are the reload's to apply.
        let same = config(
            r#"{"control-socket": "/run/simplevisor.sock", "vault": {"kv-mount": "kv"},
                "stop-timeout": "9s", "jobs": {"main": [{"cmd": ["b"]}]}}"#,
        );
        assert!(settings_needing_restart(&running, &same).is_empty());
    }

    #[test]
    fn an_entry_is_the_same_unless_something_of_its_own_changed() {
        let web = r#"{"jobs": {"main": [{"name": "web", "cmd": ["a"]}]}}"#;
        let base = main_record(web);
        assert!(base.same_entry(&main_record(web)));
        // A new top-level stop-timeout applies without a restart; defaults written out are no
        // change.
        let top = r#"{"stop-timeout": "9s", "jobs": {"main": [{"name": "web", "cmd": ["a"]}]}}"#;
        assert!(base.same_entry(&main_record(top)));
        let written_out = r#"{"jobs": {"main": [{"name": "web", "cmd": ["a"], "stop-timeout": "5s",
                                                  "kill-signal": "TERM", "restart": "always"}]}}"#;
        assert!(base.same_entry(&main_record(written_out)));
        for changed in [
            r#"{"jobs": {"main": [{"name": "web", "cmd": ["b"]}]}}"#,
            r#"{"jobs": {"main": [{"name": "web", "cmd": ["a"], "stop-timeout": "7s"}]}}"#,
            r#"{"jobs": {"main": [{"name": "web", "cmd": ["a"], "kill-signal": "INT"}]}}"#,
            r#"{"jobs": {"main": [{"name": "db", "cmd": ["d"]},
                                 {"name": "web", "cmd": ["a"], "after": ["db"]}]}}"#,
        ] {
            let config = config(changed);
            let web = records(&config)
                .1
                .into_iter()
                .find(|r| r.spec.name == "web")
                .unwrap();
            assert!(!base.same_entry(&web), "{changed}");
        }
        // Another job added before it shifts indices, not its entry.
        let shifted = config(
            r#"{"jobs": {"main": [{"name": "db", "cmd": ["d"]}, {"name": "web", "cmd": ["a"]}]}}"#,
        );
        let web = records(&shifted).1.remove(1);
        assert!(base.same_entry(&web));
    }
}
