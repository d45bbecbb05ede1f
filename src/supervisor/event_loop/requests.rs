//! Answers to control requests: status and health from the machine's snapshot, commands on
//! jobs and `reload` carried out by the machine (which decides every refusal), the file
//! re-read and compared here.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Value, json};

use crate::config;
use crate::control::protocol::{JobCommand, Request, refusal};
use crate::identity::UserDb;
use crate::signals;

use super::super::jobs::{self, JobRecord};
use super::super::machine::{Command, Refusal, ReloadSettings};
use super::super::status::{FileStatus, LeaseStatus};
use super::EventLoop;

impl EventLoop<'_> {
    /// The answer to one control request; every request leaves a record.
    pub(super) fn answer(&mut self, uid: u32, request: Result<Request, String>) -> Value {
        let request = match request {
            Ok(request) => request,
            Err(error) => {
                self.logger
                    .error(&format!("control: bad request (peer uid {uid}): {error}"));
                return refusal(2, &error);
            }
        };
        self.logger
            .info(&format!("control: {} (peer uid {uid})", request.describe()));
        let now = Instant::now();
        match request {
            Request::Status => {
                let mut snapshot = self.machine.snapshot(now);
                if let Some(link) = &self.vault {
                    snapshot.vault = link
                        .session
                        .lifetimes(now)
                        .into_iter()
                        .map(|(reference, ttl_left)| LeaseStatus {
                            reference,
                            ttl_left,
                        })
                        .collect();
                }
                snapshot.files = crate::files::status()
                    .into_iter()
                    .map(|(path, at)| FileStatus {
                        path: path.display().to_string(),
                        written_at: at
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs()),
                    })
                    .collect();
                json!({"ok": true, "status": snapshot.to_json(), "table": snapshot.to_table()})
            }
            Request::Health { live: true } => json!({"ok": true}),
            Request::Health { live: false } => match self.machine.not_ready() {
                None => json!({"ok": true}),
                Some(reason) => refusal(1, &format!("not ready: {reason}")),
            },
            Request::Jobs { command, jobs } => {
                let command = match command {
                    JobCommand::Restart => Command::Restart,
                    JobCommand::Stop => Command::Stop,
                    JobCommand::Start => Command::Start,
                };
                self.command(command, &jobs)
            }
            Request::Signal { signal, jobs } => match signals::parse_name(&signal) {
                Some(signal) => self.command(Command::Signal(signal as i32), &jobs),
                None => refusal(2, &format!("unknown signal {signal}")),
            },
            Request::Reload => self.reload(),
            Request::Rotate => self.rotate(),
        }
    }

    fn command(&mut self, command: Command, names: &[String]) -> Value {
        match self.machine.command(command, names, Instant::now()) {
            Ok(actions) => {
                self.execute(actions);
                json!({"ok": true})
            }
            Err(refused) => refused_answer(&refused),
        }
    }

    /// `reload`: re-reads the file simplevisor started with, refuses what needs a new start,
    /// and lets the machine apply the rest.
    fn reload(&mut self) -> Value {
        if let Err(refused) = self.machine.reload_refusal() {
            return refused_answer(&refused);
        }
        let source = self.config.source.clone();
        let loaded = UserDb::system()
            .map_err(|e| format!("cannot read /etc/passwd or /etc/group: {e}"))
            .and_then(|users| config::load(&source, &users).map_err(|e| e.to_string()));
        let new = match loaded {
            Ok(new) => new,
            Err(message) => {
                self.logger
                    .error(&format!("reload refused, nothing changed: {message}"));
                return refusal(1, &message);
            }
        };
        let keys = jobs::settings_needing_restart(&self.config, &new);
        if !keys.is_empty() {
            let message = format!(
                "{}: {} differ(s) from the running configuration; nothing changed (a change there needs a new start of simplevisor)",
                source.display(),
                keys.join(", ")
            );
            self.logger.error(&format!("reload refused: {message}"));
            return refusal(1, &message);
        }
        let (_, main) = jobs::records(&new);
        let by_name: HashMap<&str, &JobRecord> = self
            .records
            .values()
            .filter(|r| r.spec.kind == config::JobKind::Main)
            .map(|r| (r.spec.name.as_str(), &**r))
            .collect();
        let entries = jobs::reload_entries(&main, |name| by_name.get(name).copied());
        let settings = ReloadSettings {
            backoff: new.backoff,
            shutdown_delay: new.shutdown_delay,
        };
        let reloaded = match self.machine.reload(entries, settings, Instant::now()) {
            Ok(reloaded) => reloaded,
            Err(refused) => return refused_answer(&refused),
        };
        for (id, record) in reloaded.ids.iter().zip(main) {
            self.records.insert(*id, Box::new(record));
        }
        self.config = new;
        self.execute(reloaded.actions);
        json!({"ok": true, "lines": reloaded.lines})
    }
}

impl EventLoop<'_> {
    /// `rotate`: the renewer fetches every secret anew; the rest follows its answer.
    fn rotate(&mut self) -> Value {
        let Some(link) = &self.vault else {
            return refusal(
                1,
                "nothing to rotate: simplevisor fetched no secret from Vault and holds no token (or runs with --no-vault)",
            );
        };
        if let Err(refused) = self.machine.begin_rotation() {
            return refused_answer(&refused);
        }
        link.session.rotate();
        let line = "rotation begun: fetching every secret anew";
        self.logger
            .info(&format!("rotation: {line} (simplevisor rotate)"));
        json!({"ok": true, "lines": [line]})
    }
}

fn refused_answer(refused: &Refusal) -> Value {
    refusal(refused.code, &refused.reason)
}
