use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use super::*;

/// A snapshot with every kind of value, and names that need escaping.
fn full() -> MetricsSnapshot {
    MetricsSnapshot {
        phase: "main",
        phases: PHASES,
        ready: true,
        states: STATES,
        jobs: vec![
            JobMetrics {
                name: "migrate".into(),
                kind: "init",
                state: "done",
                last_exit_code: Some(0),
                log_lines: [3, 0],
                log_bytes: [42, 0],
                ..JobMetrics::default()
            },
            JobMetrics {
                name: "web".into(),
                kind: "main",
                state: "running",
                restarts: 2,
                start_time_unix: Some(1_764_012_345.0),
                last_exit_code: Some(137),
                log_lines: [1000, 7],
                log_bytes: [64_000, 300],
            },
            JobMetrics {
                name: "we\"ird\\na\nme".into(),
                kind: "main",
                state: "backoff",
                restarts: 5,
                last_exit_code: Some(1),
                ..JobMetrics::default()
            },
        ],
        orphans_reaped: 12,
        signals_forwarded: 3,
        vault: VaultMetrics {
            token_ttl: Some(Duration::from_secs(2700)),
            leases: vec![
                ("db:app".into(), Some(Duration::from_millis(1_800_500))),
                ("secret:static".into(), None),
            ],
            renewals_ok: 40,
            renewals_failed: 1,
            rotations: 2,
        },
        process: ProcessMetrics::read(),
    }
}

fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .collect()
}

#[test]
fn every_series_of_the_contract_is_there_with_its_value() {
    let text = render(&full());
    for expected in [
        "simplevisor_up 1",
        "simplevisor_ready 1",
        "simplevisor_phase{phase=\"main\"} 1",
        "simplevisor_phase{phase=\"shutdown-delay\"} 0",
        "simplevisor_job_state{job=\"web\",kind=\"main\",state=\"running\"} 1",
        "simplevisor_job_state{job=\"web\",kind=\"main\",state=\"backoff\"} 0",
        "simplevisor_job_state{job=\"migrate\",kind=\"init\",state=\"done\"} 1",
        "simplevisor_job_restarts_total{job=\"web\",kind=\"main\"} 2",
        "simplevisor_job_start_time_seconds{job=\"web\",kind=\"main\"} 1764012345",
        "simplevisor_job_last_exit_code{job=\"web\",kind=\"main\"} 137",
        "simplevisor_job_last_exit_code{job=\"migrate\",kind=\"init\"} 0",
        "simplevisor_log_lines_total{job=\"web\",stream=\"stdout\"} 1000",
        "simplevisor_log_lines_total{job=\"web\",stream=\"stderr\"} 7",
        "simplevisor_log_bytes_total{job=\"web\",stream=\"stdout\"} 64000",
        "simplevisor_log_bytes_total{job=\"migrate\",stream=\"stderr\"} 0",
        "simplevisor_orphans_reaped_total 12",
        "simplevisor_signals_forwarded_total 3",
        "simplevisor_vault_token_ttl_seconds 2700",
        "simplevisor_vault_lease_ttl_seconds{reference=\"db:app\"} 1800.5",
        "simplevisor_vault_renewals_total{result=\"ok\"} 40",
        "simplevisor_vault_renewals_total{result=\"failed\"} 1",
        "simplevisor_rotations_total 2",
    ] {
        assert!(text.lines().any(|l| l == expected), "{expected}\n{text}");
    }
    // One state series per state of the job's kind, exactly one of them 1.
    let web: Vec<&str> = lines_of(&text, "simplevisor_job_state")
        .into_iter()
        .filter(|l| l.contains("job=\"web\""))
        .collect();
    assert_eq!(web.len(), 8, "{web:?}");
    assert_eq!(web.iter().filter(|l| l.ends_with(" 1")).count(), 1);
    let migrate = lines_of(&text, "simplevisor_job_state")
        .into_iter()
        .filter(|l| l.contains("job=\"migrate\""))
        .count();
    assert_eq!(migrate, 5);
    assert_eq!(
        lines_of(&text, "simplevisor_phase").len(),
        6,
        "vault, init, main, shutdown-delay, stopping, done"
    );
    // Only running jobs have a start time; a lease that does not expire has no sample.
    assert_eq!(
        lines_of(&text, "simplevisor_job_start_time_seconds").len(),
        1
    );
    assert!(!text.contains("secret:static"));
    for process in [
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(process)),
            "{process}\n{text}"
        );
    }
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape("plain"), "plain");
    assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    let text = render(&full());
    assert!(
        text.contains(
            "simplevisor_job_restarts_total{job=\"we\\\"ird\\\\na\\nme\",kind=\"main\"} 5"
        ),
        "{text}"
    );
    assert!(
        text.lines()
            .all(|l| !l.contains("me\",kind") || l.contains("\\nme"))
    );
}

#[test]
fn every_family_has_help_and_type_once_before_its_samples() {
    let text = render(&full());
    let mut declared = BTreeSet::new();
    let mut typed = BTreeSet::new();
    let mut finished = BTreeSet::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_string();
            assert!(declared.insert(name.clone()), "HELP twice: {name}");
            finished.insert(std::mem::replace(&mut current, name));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            let name = words.next().unwrap();
            assert_eq!(name, current, "TYPE away from its HELP");
            let kind = words.next().unwrap();
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            typed.insert(name.to_string());
        } else {
            let name = line.split(['{', ' ']).next().unwrap();
            assert_eq!(name, current, "sample outside its family: {line}");
            assert!(!finished.contains(name));
        }
    }
    assert_eq!(declared, typed);
    assert!(text.ends_with('\n'));
}

#[test]
fn an_empty_snapshot_still_declares_every_family() {
    let text = render(&MetricsSnapshot::default());
    let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(families, 20);
    assert!(text.contains("\nsimplevisor_ready 0\n"));
}

#[test]
fn the_process_figures_are_this_process() {
    let process = ProcessMetrics::read();
    assert!(process.resident_memory_bytes.unwrap() > 1 << 20);
    assert!(process.open_fds.unwrap() >= 3);
    assert!(process.max_fds.unwrap() >= process.open_fds.unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = process.start_time_seconds.unwrap();
    assert!(start <= now + 1.0 && start > now - 3600.0, "{start} {now}");
    assert!(process.cpu_seconds.unwrap() >= 0.0);
}

#[test]
fn floats_are_written_as_the_format_reads_them() {
    let mut out = String::new();
    for value in [0.0, 1.5, 1e21, f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
        value.put(&mut out);
        out.push(' ');
    }
    assert_eq!(out, "0 1.5 1000000000000000000000 +Inf -Inf NaN ");
}

/// `promtool check metrics` (from the Debian package `prometheus`) finds no problem.
#[test]
fn promtool_finds_no_problem() {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("prerequisite missing in CI: promtool (scripts/setup installs it)");
        }
        eprintln!("SKIPPED: prerequisite missing: promtool (run scripts/setup)");
        return;
    }
    let mut snapshot = full();
    snapshot.jobs.extend((0..50).map(|n| JobMetrics {
        name: format!("worker-{n}"),
        kind: "main",
        state: "waiting",
        ..JobMetrics::default()
    }));
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(render(&snapshot).as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success() && said.trim().is_empty(), "{said}");
}

/// A scrape of 1,000 jobs renders in well under the 2 ms budget (in an optimized build; the
/// bound here leaves room for debug builds and a busy machine).
#[test]
fn a_thousand_jobs_render_quickly() {
    let mut snapshot = full();
    snapshot.jobs = (0..1000)
        .map(|n| JobMetrics {
            name: format!("worker-{n}"),
            kind: "main",
            state: "running",
            restarts: n,
            start_time_unix: Some(1_764_012_345.0),
            last_exit_code: Some(1),
            log_lines: [n * 10, n],
            log_bytes: [n * 1000, n * 10],
        })
        .collect();
    let started = std::time::Instant::now();
    let text = render(&snapshot);
    let took = started.elapsed();
    assert_eq!(lines_of(&text, "simplevisor_job_state").len(), 8000);
    assert!(took < Duration::from_millis(200), "{took:?}");
}
