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

    /// Whether `other` is the same entry: equal in everything but a `stop-timeout` both take
    /// from the top level (a new top-level value applies without a restart).
    pub fn same_entry(&self, other: &JobRecord) -> bool {
        let mut ours = self.spec.clone();
        let mut theirs = other.spec.clone();
        ours.after.clear();
        theirs.after.clear();
        if ours.inherits_stop_timeout && theirs.inherits_stop_timeout {
            theirs.stop_timeout = ours.stop_timeout;
        }
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
