//! The Prometheus text exposition format (version 0.0.4) of a [`MetricsSnapshot`], and the
//! process's own figures read from `/proc/self` ([`ProcessMetrics::read`]).
//!
//! Pure but for [`ProcessMetrics::read`]: the caller fills the snapshot from what the
//! supervisor already keeps for `status` (and the relay's counters), and renders it for each
//! scrape. Every family has `# HELP` and `# TYPE` and its samples together; label values are
//! escaped (`\`, `"`, newline). A lease appears by its reference only, never by its id.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

/// The `Content-Type` of a rendered snapshot.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The supervisor's phases, as `status` names them.
pub const PHASES: &[&str] = &[
    "vault",
    "init",
    "main",
    "shutdown-delay",
    "stopping",
    "done",
];

/// The states a job of each kind can be in, as `status` names them.
pub const STATES: &[(&str, &[&str])] = &[
    (
        "init",
        &["pending", "running", "stopping", "done", "failed"],
    ),
    (
        "main",
        &[
            "waiting", "starting", "running", "backoff", "stopping", "stopped", "exited", "failed",
        ],
    ),
];

/// Everything one scrape shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// The current phase; one of `phases`.
    pub phase: &'static str,
    /// Every phase, each a series of `simplevisor_phase` ([`PHASES`]).
    pub phases: &'static [&'static str],
    /// As `health`.
    pub ready: bool,
    /// Every state per job kind, each a series of `simplevisor_job_state` ([`STATES`]).
    pub states: &'static [(&'static str, &'static [&'static str])],
    pub jobs: Vec<JobMetrics>,
    pub orphans_reaped: u64,
    /// One per signal received and forwarded, however many jobs got it.
    pub signals_forwarded: u64,
    pub vault: VaultMetrics,
    pub process: ProcessMetrics,
}

/// One job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobMetrics {
    pub name: String,
    /// `init` or `main`.
    pub kind: &'static str,
    pub state: &'static str,
    /// Starts after the first, whatever the cause (as `status`).
    pub restarts: u64,
    /// Unix time of the current run's start, while it runs.
    pub start_time_unix: Option<f64>,
    /// How the last run ended: its exit status, or 128 + the signal's number.
    pub last_exit_code: Option<i32>,
    /// Records written (index 0 stdout, 1 stderr), as `logs::pipes::LogCounts` counts them.
    pub log_lines: [u64; 2],
    /// Bytes the job wrote (index 0 stdout, 1 stderr), newlines included.
    pub log_bytes: [u64; 2],
}

/// Vault, when simplevisor uses it (all empty and zero otherwise).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VaultMetrics {
    /// Time left on simplevisor's token; `None`: no token, or one that does not expire.
    pub token_ttl: Option<Duration>,
    /// Every lease by its reference (`db:app`, as `status` shows it) and its time left
    /// (`None`: it does not expire, and has no sample).
    pub leases: Vec<(String, Option<Duration>)>,
    pub renewals_ok: u64,
    pub renewals_failed: u64,
    pub rotations: u64,
}

/// The standard process metrics; `None` where `/proc` could not say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessMetrics {
    pub resident_memory_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    /// Unix time the process started.
    pub start_time_seconds: Option<f64>,
}

impl ProcessMetrics {
    /// Reads `/proc/self/stat`, `/proc/stat` (boot time), `/proc/self/fd` and the
    /// descriptor limit. Never fails: what cannot be read has no sample.
    pub fn read() -> ProcessMetrics {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // The command name may hold spaces and parentheses: the fields start after the last `)`.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // Field n of proc_pid_stat(5) is fields[n - 3].
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let per_tick = (ticks > 0).then(|| 1.0 / ticks as f64);
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        ProcessMetrics {
            resident_memory_bytes: field(24)
                .zip(u64::try_from(page).ok())
                .map(|(pages, size)| pages * size),
            cpu_seconds: field(14)
                .zip(field(15))
                .zip(per_tick)
                .map(|((user, system), per)| (user + system) as f64 * per),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|dir| dir.count() as u64),
            max_fds: nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .ok()
                .map(|(soft, _)| soft),
            start_time_seconds: field(22)
                .zip(per_tick)
                .zip(boot)
                .map(|((start, per), boot)| boot as f64 + start as f64 * per),
        }
    }
}

/// The snapshot in the text format.
pub fn render(snapshot: &MetricsSnapshot) -> String {
    // About 100 bytes a series; a job has about 16.
    let mut out = Text(String::with_capacity(4096 + snapshot.jobs.len() * 1600));
    let jobs: Vec<(Cow<'_, str>, &JobMetrics)> = snapshot
        .jobs
        .iter()
        .map(|job| (escape(&job.name), job))
        .collect();

    out.family("simplevisor_up", "gauge", "Always 1: simplevisor answers.");
    out.sample("simplevisor_up", &[], 1u64);
    out.family(
        "simplevisor_ready",
        "gauge",
        "1 when simplevisor is ready (as `simplevisor health`), else 0.",
    );
    out.sample("simplevisor_ready", &[], u64::from(snapshot.ready));
    out.family(
        "simplevisor_phase",
        "gauge",
        "1 for the current phase, 0 for the others.",
    );
    for phase in snapshot.phases {
        out.sample(
            "simplevisor_phase",
            &[("phase", phase)],
            u64::from(*phase == snapshot.phase),
        );
    }
    if !snapshot.phases.contains(&snapshot.phase) && !snapshot.phase.is_empty() {
        out.sample("simplevisor_phase", &[("phase", snapshot.phase)], 1u64);
    }

    out.family(
        "simplevisor_job_state",
        "gauge",
        "1 for the job's current state, 0 for the other states of its kind.",
    );
    for (name, job) in &jobs {
        let states = snapshot
            .states
            .iter()
            .find(|(kind, _)| *kind == job.kind)
            .map_or(&[][..], |(_, states)| *states);
        for state in states {
            out.sample_escaped(
                "simplevisor_job_state",
                name,
                &[("kind", job.kind), ("state", state)],
                u64::from(*state == job.state),
            );
        }
        if !states.contains(&job.state) {
            out.sample_escaped(
                "simplevisor_job_state",
                name,
                &[("kind", job.kind), ("state", job.state)],
                1u64,
            );
        }
    }
    out.family(
        "simplevisor_job_restarts_total",
        "counter",
        "Starts of the job after its first, whatever the cause.",
    );
    for (name, job) in &jobs {
        let labels = [("kind", job.kind)];
        out.sample_escaped(
            "simplevisor_job_restarts_total",
            name,
            &labels,
            job.restarts,
        );
    }
    out.family(
        "simplevisor_job_start_time_seconds",
        "gauge",
        "Unix time the job's current run started; only while it runs.",
    );
    for (name, job) in &jobs {
        if let Some(start) = job.start_time_unix {
            let labels = [("kind", job.kind)];
            out.sample_escaped("simplevisor_job_start_time_seconds", name, &labels, start);
        }
    }
    out.family(
        "simplevisor_job_last_exit_code",
        "gauge",
        "Exit status of the job's last run, or 128 + the signal that ended it.",
    );
    for (name, job) in &jobs {
        if let Some(code) = job.last_exit_code {
            let labels = [("kind", job.kind)];
            out.sample_escaped("simplevisor_job_last_exit_code", name, &labels, code);
        }
    }
    for (family, help, counts) in [
        (
            "simplevisor_log_lines_total",
            "Log records written for the job's output, per stream (one per line).",
            (|job: &JobMetrics| job.log_lines) as fn(&JobMetrics) -> [u64; 2],
        ),
        (
            "simplevisor_log_bytes_total",
            "Bytes the job wrote, per stream, newlines included.",
            |job: &JobMetrics| job.log_bytes,
        ),
    ] {
        out.family(family, "counter", help);
        for (name, job) in &jobs {
            let [stdout, stderr] = counts(job);
            out.sample_escaped(family, name, &[("stream", "stdout")], stdout);
            out.sample_escaped(family, name, &[("stream", "stderr")], stderr);
        }
    }

    out.family(
        "simplevisor_orphans_reaped_total",
        "counter",
        "Processes reaped that were not jobs (orphans adopted as PID 1).",
    );
    out.sample(
        "simplevisor_orphans_reaped_total",
        &[],
        snapshot.orphans_reaped,
    );
    out.family(
        "simplevisor_signals_forwarded_total",
        "counter",
        "Signals received and forwarded to the jobs (one per signal, however many jobs got it).",
    );
    out.sample(
        "simplevisor_signals_forwarded_total",
        &[],
        snapshot.signals_forwarded,
    );

    let vault = &snapshot.vault;
    out.family(
        "simplevisor_vault_token_ttl_seconds",
        "gauge",
        "Time left on simplevisor's Vault token; no sample without one or if it does not expire.",
    );
    if let Some(ttl) = vault.token_ttl {
        out.sample(
            "simplevisor_vault_token_ttl_seconds",
            &[],
            ttl.as_secs_f64(),
        );
    }
    out.family(
        "simplevisor_vault_lease_ttl_seconds",
        "gauge",
        "Time left on each Vault lease, by the reference it was fetched for.",
    );
    for (reference, ttl) in &vault.leases {
        if let Some(ttl) = ttl {
            out.sample(
                "simplevisor_vault_lease_ttl_seconds",
                &[("reference", reference)],
                ttl.as_secs_f64(),
            );
        }
    }
    out.family(
        "simplevisor_vault_renewals_total",
        "counter",
        "Renewals of the token and the leases, by result (ok, failed).",
    );
    out.sample(
        "simplevisor_vault_renewals_total",
        &[("result", "ok")],
        vault.renewals_ok,
    );
    out.sample(
        "simplevisor_vault_renewals_total",
        &[("result", "failed")],
        vault.renewals_failed,
    );
    out.family(
        "simplevisor_rotations_total",
        "counter",
        "Secrets fetched anew and handed to the jobs.",
    );
    out.sample("simplevisor_rotations_total", &[], vault.rotations);

    let process = &snapshot.process;
    let figures: [(&str, &str, &str, Option<f64>); 5] = [
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            process.resident_memory_bytes.map(|v| v as f64),
        ),
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            process.cpu_seconds,
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            process.open_fds.map(|v| v as f64),
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            process.max_fds.map(|v| v as f64),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            process.start_time_seconds,
        ),
    ];
    for (name, kind, help, value) in figures {
        out.family(name, kind, help);
        if let Some(value) = value {
            out.sample(name, &[], value);
        }
    }
    out.0
}

/// A label value with `\`, `"` and newline escaped.
pub fn escape(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A sample value in the format's notation.
trait SampleValue {
    fn put(self, out: &mut String);
}

impl SampleValue for u64 {
    fn put(self, out: &mut String) {
        out.push_str(itoa::Buffer::new().format(self));
    }
}

impl SampleValue for i32 {
    fn put(self, out: &mut String) {
        out.push_str(itoa::Buffer::new().format(self));
    }
}

impl SampleValue for f64 {
    fn put(self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            // Rust prints a finite f64 in plain decimal, which the format accepts.
            let _ = write!(out, "{self}");
        }
    }
}

struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let out = &mut self.0;
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        out.push_str(help);
        out.push_str("\n# TYPE ");
        out.push_str(name);
        out.push(' ');
        out.push_str(kind);
        out.push('\n');
    }

    /// A sample with labels whose values still need escaping.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl SampleValue) {
        let out = &mut self.0;
        out.push_str(name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(label);
                out.push_str("=\"");
                out.push_str(&escape(value));
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        value.put(out);
        out.push('\n');
    }

    /// A sample of a job: `job` already escaped, then `labels` (fixed words, not escaped).
    fn sample_escaped(
        &mut self,
        name: &str,
        job: &str,
        labels: &[(&str, &str)],
        value: impl SampleValue,
    ) {
        let out = &mut self.0;
        out.push_str(name);
        out.push_str("{job=\"");
        out.push_str(job);
        out.push('"');
        for (label, value) in labels {
            out.push(',');
            out.push_str(label);
            out.push_str("=\"");
            out.push_str(value);
            out.push('"');
        }
        out.push_str("} ");
        value.put(out);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests;
