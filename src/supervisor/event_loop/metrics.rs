//! The metrics listener's requests answered from what the machine, the relay and Vault
//! already know: `/metrics` from a snapshot built per scrape, `/readyz` as `health`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::metrics::{self, JobMetrics, MetricsSnapshot, ProcessMetrics, VaultMetrics};
use crate::signals;

use super::super::status::LastExit;
use super::EventLoop;

impl EventLoop<'_> {
    /// An event on the metrics listener or one of its connections.
    pub(super) fn on_metrics(&mut self, token: u64) {
        let Some(server) = &mut self.metrics else {
            return;
        };
        if token == server.listener_token() {
            if let Some(record) = server.accept(&self.epoll, Instant::now()) {
                self.logger.error(&record);
            }
            return;
        }
        let Some(slot) = server.slot_of(token) else {
            return;
        };
        let Some((slot, request)) = server.on_ready(slot, &self.epoll, Instant::now()) else {
            return;
        };
        let not_ready = self.machine.not_ready();
        let response = metrics::answer(request.route, not_ready.as_deref(), || self.scrape());
        if let Some(server) = &mut self.metrics {
            server.answer(slot, response, &self.epoll);
        }
        super::super::pid1::release_free_heap();
    }

    /// Everything one scrape shows.
    fn scrape(&self) -> MetricsSnapshot {
        let now = Instant::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let snapshot = self.machine.snapshot(now);
        let counters = self.machine.counters();
        let jobs = snapshot
            .jobs
            .iter()
            .map(|job| {
                let counts = self.pipes.log_counts(job.id);
                JobMetrics {
                    name: job.name.clone(),
                    kind: job.kind,
                    state: job.state.as_str(),
                    restarts: u64::from(job.restarts),
                    start_time_unix: job.uptime.map(|up| wall.saturating_sub(up).as_secs_f64()),
                    last_exit_code: job.last_exit.as_ref().map(|exit| match exit {
                        LastExit::Code(code) => *code,
                        LastExit::Signal(name) => {
                            128 + signals::parse_name(name).map_or(0, |s| s as i32)
                        }
                    }),
                    log_lines: counts.lines,
                    log_bytes: counts.bytes,
                }
            })
            .collect();
        let vault = match &self.vault {
            Some(link) => {
                let mut lifetimes = link.session.lifetimes(now);
                let token = lifetimes
                    .iter()
                    .position(|(reference, _)| reference == "token")
                    .map(|at| lifetimes.remove(at).1);
                let (renewals_ok, renewals_failed) = link.session.renewals();
                VaultMetrics {
                    token_ttl: token.flatten(),
                    leases: lifetimes,
                    renewals_ok,
                    renewals_failed,
                    rotations: counters.rotations,
                }
            }
            None => VaultMetrics::default(),
        };
        MetricsSnapshot {
            phase: self.machine.phase_name(),
            phases: metrics::exposition::PHASES,
            ready: snapshot.not_ready.is_none(),
            states: metrics::exposition::STATES,
            jobs,
            orphans_reaped: counters.orphans_reaped,
            signals_forwarded: counters.signals_forwarded,
            vault,
            process: ProcessMetrics::read(),
        }
    }
}
