//! What `simplevisor status` and `health` show: a snapshot of the machine's state (plus the
//! Vault leases), as a stable JSON shape for tools and a table for people. Pure data; the
//! machine fills it, the control socket sends it, the `status` command prints it.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::duration;

/// The state of one job, as documented in docs/operations.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Init job not run yet.
    Pending,
    /// Main job waiting for the jobs it lists in `after` (or for the init jobs).
    Waiting,
    /// Running, readiness check not passed yet.
    Starting,
    Running,
    /// Waiting out the restart delay.
    Backoff,
    /// Its kill signal was sent.
    Stopping,
    /// Stopped by a `stop` command.
    Stopped,
    /// Finished and not restarted (its restart policy says so).
    Exited,
    /// Gave up (`max-restarts`), or an init job that failed.
    Failed,
    /// Init job that succeeded.
    Done,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Waiting => "waiting",
            JobState::Starting => "starting",
            JobState::Running => "running",
            JobState::Backoff => "backoff",
            JobState::Stopping => "stopping",
            JobState::Stopped => "stopped",
            JobState::Exited => "exited",
            JobState::Failed => "failed",
            JobState::Done => "done",
        }
    }
}

/// How a job's last run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastExit {
    Code(i32),
    /// The signal's name without `SIG`.
    Signal(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    /// The machine's id of the job (not shown: for the shell's own records).
    pub id: usize,
    pub name: String,
    /// `"init"` or `"main"`.
    pub kind: &'static str,
    pub state: JobState,
    pub pid: Option<i32>,
    pub uptime: Option<Duration>,
    pub restarts: u32,
    pub last_exit: Option<LastExit>,
    /// Why the last start failed (the job's program could not be run), when it did.
    pub start_error: Option<String>,
    /// In `backoff`: time left until the next start.
    pub next_start_in: Option<Duration>,
    /// In `starting`: why the last readiness check failed.
    pub check_error: Option<String>,
}

/// One Vault lease (or the token) and its time left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStatus {
    /// The secret's reference (`db:app`) or `token`; never an id or a value.
    pub reference: String,
    /// `None`: it does not expire.
    pub ttl_left: Option<Duration>,
}

/// A file simplevisor wrote (`files`), and when it last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStatus {
    pub path: String,
    /// Unix time in whole seconds.
    pub written_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `init`, `main`, `shutdown-delay`, `stopping` or `done`.
    pub phase: &'static str,
    /// `None` when ready; else why not.
    pub not_ready: Option<String>,
    pub jobs: Vec<JobStatus>,
    pub vault: Vec<LeaseStatus>,
    pub files: Vec<FileStatus>,
}

impl Snapshot {
    /// The documented JSON shape (docs/operations.md).
    pub fn to_json(&self) -> Value {
        let jobs: Vec<Value> = self
            .jobs
            .iter()
            .map(|job| {
                json!({
                    "name": job.name,
                    "kind": job.kind,
                    "state": job.state.as_str(),
                    "pid": job.pid,
                    "uptime_seconds": job.uptime.map(|d| d.as_secs()),
                    "restarts": job.restarts,
                    "last_exit": job.last_exit.as_ref().map(|exit| {
                        let mut exit = match exit {
                            LastExit::Code(code) => json!({"code": code}),
                            LastExit::Signal(signal) => json!({"signal": signal}),
                        };
                        if let Some(reason) = &job.start_error {
                            exit["reason"] = json!(reason);
                        }
                        exit
                    }),
                    "next_start_in_seconds": job.next_start_in.map(|d| d.as_secs_f64()),
                    "ready_check_error": job.check_error,
                })
            })
            .collect();
        let leases: Vec<Value> = self
            .vault
            .iter()
            .map(|lease| {
                json!({
                    "reference": lease.reference,
                    "ttl_seconds": lease.ttl_left.map(|d| d.as_secs()),
                })
            })
            .collect();
        json!({
            "phase": self.phase,
            "ready": self.not_ready.is_none(),
            "not_ready_reason": self.not_ready,
            "jobs": jobs,
            "vault_leases": leases,
            "files": self.files.iter().map(|file| json!({
                "path": file.path,
                "written_at": file.written_at,
            })).collect::<Vec<Value>>(),
        })
    }

    /// The table `simplevisor status` prints.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "phase: {}; {}",
            self.phase,
            match &self.not_ready {
                None => "ready".to_string(),
                Some(reason) => format!("not ready: {reason}"),
            }
        );
        let rows: Vec<[String; 7]> = self
            .jobs
            .iter()
            .map(|job| {
                let mut state = job.state.as_str().to_string();
                if let Some(left) = job.next_start_in {
                    let _ = write!(state, " ({} left)", duration::format(round(left)));
                }
                [
                    job.name.clone(),
                    job.kind.to_string(),
                    state,
                    job.pid.map_or("-".into(), |pid| pid.to_string()),
                    job.uptime.map_or("-".into(), |d| {
                        duration::format(Duration::from_secs(d.as_secs()))
                    }),
                    job.restarts.to_string(),
                    match &job.last_exit {
                        None => "-".into(),
                        Some(LastExit::Code(code)) => format!("status {code}"),
                        Some(LastExit::Signal(signal)) => format!("signal {signal}"),
                    },
                ]
            })
            .collect();
        let header = [
            "NAME",
            "KIND",
            "STATE",
            "PID",
            "UPTIME",
            "RESTARTS",
            "LAST EXIT",
        ];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut line = |cells: &[String]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
                }
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(&header.map(String::from));
        for row in &rows {
            line(row);
        }
        for job in &self.jobs {
            if let Some(error) = &job.start_error {
                let _ = writeln!(out, "{}: could not start: {error}", job.name);
            }
            if let Some(error) = &job.check_error {
                let _ = writeln!(out, "{}: readiness check failing: {error}", job.name);
            }
        }
        for lease in &self.vault {
            let _ = writeln!(
                out,
                "vault {}: {}",
                lease.reference,
                match lease.ttl_left {
                    None => "does not expire".into(),
                    Some(left) => format!(
                        "{} left",
                        duration::format(Duration::from_secs(left.as_secs()))
                    ),
                }
            );
        }
        for file in &self.files {
            let _ = writeln!(
                out,
                "file {}: written at {} (Unix time)",
                file.path, file.written_at
            );
        }
        out
    }
}

/// To the tenth of a second, for a human.
fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().div_ceil(100).saturating_mul(100) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            phase: "main",
            not_ready: Some("job web is backoff".into()),
            jobs: vec![
                JobStatus {
                    id: 0,
                    name: "migrate".into(),
                    kind: "init",
                    state: JobState::Done,
                    pid: None,
                    uptime: None,
                    restarts: 0,
                    last_exit: Some(LastExit::Code(0)),
                    start_error: None,
                    next_start_in: None,
                    check_error: None,
                },
                JobStatus {
                    id: 1,
                    name: "web".into(),
                    kind: "main",
                    state: JobState::Backoff,
                    pid: None,
                    uptime: None,
                    restarts: 3,
                    last_exit: Some(LastExit::Signal("KILL".into())),
                    start_error: None,
                    next_start_in: Some(Duration::from_millis(3950)),
                    check_error: None,
                },
            ],
            vault: vec![LeaseStatus {
                reference: "db:app".into(),
                ttl_left: Some(Duration::from_secs(125)),
            }],
            files: vec![FileStatus {
                path: "/run/secrets/db".into(),
                written_at: 1_700_000_000,
            }],
        }
    }

    #[test]
    fn the_json_shape_is_stable() {
        assert_eq!(
            snapshot().to_json(),
            json!({
                "phase": "main",
                "ready": false,
                "not_ready_reason": "job web is backoff",
                "jobs": [
                    {"name": "migrate", "kind": "init", "state": "done", "pid": null,
                     "uptime_seconds": null, "restarts": 0, "last_exit": {"code": 0},
                     "next_start_in_seconds": null, "ready_check_error": null},
                    {"name": "web", "kind": "main", "state": "backoff", "pid": null,
                     "uptime_seconds": null, "restarts": 3, "last_exit": {"signal": "KILL"},
                     "next_start_in_seconds": 3.95, "ready_check_error": null}
                ],
                "vault_leases": [{"reference": "db:app", "ttl_seconds": 125}],
                "files": [{"path": "/run/secrets/db", "written_at": 1_700_000_000}]
            })
        );
    }

    #[test]
    fn the_table_lines_up() {
        let table = snapshot().to_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "phase: main; not ready: job web is backoff");
        assert_eq!(
            lines[1],
            "NAME     KIND  STATE              PID  UPTIME  RESTARTS  LAST EXIT"
        );
        assert_eq!(
            lines[2],
            "migrate  init  done               -    -       0         status 0"
        );
        assert_eq!(
            lines[3],
            "web      main  backoff (4s left)  -    -       3         signal KILL"
        );
        assert_eq!(lines[4], "vault db:app: 125s left");
        assert_eq!(
            lines[5],
            "file /run/secrets/db: written at 1700000000 (Unix time)"
        );
    }
}
