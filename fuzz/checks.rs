//! The invariants the fuzz targets check, in one place. Each function takes the raw bytes of one
//! fuzz input and panics when an invariant does not hold.
//!
//! This file is compiled twice: by each fuzz target (`fuzz/fuzz_targets/*.rs`) and by the stable
//! replay test (`tests/fuzz_corpora.rs`), both with `#[path]`. It only uses what both have:
//! `simplevisor`, `serde` and `serde_json`.

// Each fuzz target uses one of the checks.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use simplevisor::config::{self, Config, ConfigError, EnvSettings, JobKind, LogFormat};
use simplevisor::control::protocol::{JobCommand, Request};
use simplevisor::environment;
use simplevisor::identity::UserDb;
use simplevisor::logs::MAX_MESSAGE;
use simplevisor::logs::encode::RecordHead;
use simplevisor::logs::framing::Framer;
use simplevisor::template;

/// Values that must never appear in an error message. Error messages may quote names and the
/// text of a config or template, so the check is skipped when the input itself contains it.
const MARKER: &str = "SECRETVALUE";

/// simplevisor's own Vault credentials: never passed on unless named in `env.pass`.
const CREDENTIALS: [&str; 3] = ["VAULT_TOKEN", "VAULT_SECRET_ID", "VAULT_ROLE_ID"];

fn assert_no_marker(message: &str, input_has_marker: bool, what: &str) {
    assert!(
        input_has_marker || !message.contains(MARKER),
        "{what} quotes a secret value: {message:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// config: load + validation from bytes, then the environment plan `check` makes from it.
// ---------------------------------------------------------------------------------------------

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\napp:x:1000:app\nadmins:x:1001:app,root\n";

/// The process environment the config target plans against. Values holding [`MARKER`] are
/// secrets or pasted-secret look-alikes in places a message must never quote.
fn process_env() -> Vec<(String, String)> {
    [
        ("PATH", "/usr/bin:/bin"),
        ("HOME", "/root"),
        ("DB_USER", "db:prod-db:Username"),
        ("DB_PASS", "db:prod-db:Password"),
        ("API_KEY", "secret:SECRETVALUE-path:key"),
        ("AWS_ID", "aws-user:deploy:KeyId"),
        ("NOT_A_REF", "SECRETVALUE-pasted-secret"),
        ("TWO_PARTS", "db:SECRETVALUE-two"),
        ("DSN", "postgres://{{ .DB_USER }}:{{ .DB_PASS }}@db/app"),
        ("BAD_TEMPLATE", "{{ .MISSING }} {{ if }}"),
        ("VAULT_TOKEN", "SECRETVALUE-token"),
        ("VAULT_SECRET_ID", "SECRETVALUE-secret-id"),
        ("VAULT_ROLE_ID", "role-id"),
        ("VAULT_ADDR", "http://127.0.0.1:8200"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Config load + validation of `data` as the text of a config file, then `check`'s environment
/// plan and the job environment built from it.
///
/// - JSON syntax errors are reported as such exactly when `serde_json` rejects the text;
/// - a loaded config keeps every promise of `Config`/`JobSpec` (non-empty argv and names,
///   unique names, init jobs never restarted, backoff and mounts valid, variable names valid);
/// - an invalid config has at least one problem, each with a path;
/// - loading is deterministic;
/// - environment messages never quote a secret value, and simplevisor's own Vault credentials
///   are passed to jobs only when named in `env.pass`.
pub fn config(data: &[u8]) {
    // `config::load` reads the file with `read_to_string`: text that is not UTF-8 never
    // reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let users = UserDb::parse(PASSWD, GROUP);
    let source = Path::new("fuzz.json");
    let result = config::validate::parse(text, source, &users);
    let again = config::validate::parse(text, source, &users);
    assert_eq!(
        format!("{result:?}"),
        format!("{again:?}"),
        "loading is not deterministic"
    );
    let json = serde_json::from_str::<Value>(text).ok();
    let is_json = json.is_some();
    // Names may be spelled with escapes (`\u0041`): look at the decoded text too.
    let has_marker = text.contains(MARKER)
        || json
            .as_ref()
            .is_some_and(|json| json.to_string().contains(MARKER));
    match result {
        Ok(config) => {
            assert!(is_json, "accepted text serde_json rejects");
            assert_eq!(config.source, source);
            config_promises(&config);
            for no_vault in [false, true] {
                environment_of(&config, no_vault, has_marker);
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(!message.is_empty());
            match error {
                ConfigError::Syntax { .. } => {
                    assert!(!is_json, "valid JSON reported as a syntax error: {message}");
                }
                ConfigError::Invalid { problems, .. } => {
                    assert!(is_json, "invalid JSON not reported as a syntax error");
                    let top_level_has_empty_key = json
                        .as_ref()
                        .and_then(Value::as_object)
                        .is_some_and(|map| map.contains_key(""));
                    assert!(!problems.is_empty(), "invalid without a problem");
                    for problem in &problems {
                        // A problem with an empty key at the top level has the empty path.
                        assert!(
                            !problem.path.is_empty() || top_level_has_empty_key,
                            "problem without a path: {problem}"
                        );
                        assert!(!problem.message.is_empty(), "empty problem at {problem}");
                    }
                }
                ConfigError::Read { .. } | ConfigError::TooLarge { .. } => {
                    panic!("a read error without reading: {message}")
                }
            }
        }
    }
}

/// What a validated `Config` promises to every other module.
fn config_promises(config: &Config) {
    let mut names = std::collections::BTreeSet::new();
    for job in config.jobs() {
        assert!(!job.cmd.is_empty(), "job {:?} without argv", job.name);
        assert!(
            !job.cmd[0].is_empty(),
            "job {:?} with an empty program",
            job.name
        );
        assert!(
            !job.name.is_empty(),
            "job with an empty name: {:?}",
            job.cmd
        );
        assert_ne!(job.name, simplevisor::logs::INTERNAL, "reserved name");
        assert!(
            names.insert(job.name.as_str()),
            "duplicate name {:?}",
            job.name
        );
        if let Some(dir) = &job.workdir {
            assert!(!dir.as_os_str().is_empty(), "empty workdir");
            assert!(!dir.to_string_lossy().contains('\0'), "NUL in workdir");
        }
        // The input limits: nothing that would only fail once the jobs start.
        assert!(job.cmd.iter().all(|a| !a.contains('\0')), "NUL in cmd");
        assert!(job.name.len() <= 128, "name over 128 bytes");
        assert!(
            !job.name.chars().any(char::is_control),
            "control character in a name"
        );
        assert_ne!(job.kill_signal.as_str(), "SIGSTOP", "STOP as kill-signal");
        assert!(
            job.stop_timeout <= config::duration::MAX,
            "stop-timeout over a year"
        );
        if let Some(id) = &job.run_as {
            assert!(id.uid != u32::MAX && id.gid != u32::MAX, "id 4294967295");
        }
        for &first in &job.after {
            assert!(first < config.main.len(), "after points past the main jobs");
        }
    }
    for duration in [
        config.backoff.initial,
        config.backoff.max,
        config.backoff.reset_after,
        config.vault.startup_timeout,
        config.vault.request_timeout,
        config.shutdown_delay,
    ] {
        assert!(duration <= config::duration::MAX, "a duration over a year");
    }
    for job in &config.init {
        assert_eq!(job.kind, JobKind::Init);
        assert_eq!(job.restart, config::RestartPolicy::Never);
        assert!(!job.essential, "essential init job");
    }
    for job in &config.main {
        assert_eq!(job.kind, JobKind::Main);
    }
    let backoff = &config.backoff;
    assert!(!backoff.initial.is_zero(), "zero restart-backoff.initial");
    assert!(
        backoff.initial <= backoff.max,
        "restart-backoff initial > max"
    );
    assert!(
        (1.0..=1000.0).contains(&backoff.multiplier),
        "multiplier {}",
        backoff.multiplier
    );
    let vault = &config.vault;
    for mount in [
        &vault.kv_mount,
        &vault.db_mount,
        &vault.aws_mount,
        &vault.approle_mount,
    ] {
        assert!(!mount.is_empty(), "empty mount");
        assert!(
            !mount.starts_with('/') && !mount.ends_with('/'),
            "mount {mount:?}"
        );
    }
    let env = &config.env;
    for name in env
        .pass
        .iter()
        .chain(&env.vault_replace)
        .chain(&env.vault_template)
    {
        assert!(
            !name.is_empty() && !name.contains('=') && !name.contains('\0'),
            "invalid variable name {name:?}"
        );
    }
    for name in &env.vault_template {
        assert!(!env.vault_replace.contains(name), "{name} is both kinds");
    }
}

/// `check`'s environment plan for `config`, then the job environment `run` builds from it.
fn environment_of(config: &Config, no_vault: bool, has_marker: bool) {
    let process_env = process_env();
    let plan = match simplevisor::startup::plan_environment(config, &process_env, no_vault) {
        Ok(plan) => plan,
        Err(message) => {
            assert_no_marker(&message, has_marker, "the environment plan");
            return;
        }
    };
    if no_vault {
        assert!(plan.replacements.is_empty() && !plan.needs_vault);
    }
    for (name, reference) in &plan.replacements {
        let value = lookup(&process_env, name).unwrap_or_default();
        assert_eq!(
            environment::parse_reference(value).as_ref(),
            Ok(reference),
            "plan and parse_reference disagree on {name}"
        );
    }
    let resolved: BTreeMap<String, String> = plan
        .replacements
        .iter()
        .map(|(name, _)| (name.clone(), format!("{MARKER}-resolved-{name}")))
        .collect();
    match environment::build(&config.env, &process_env, &plan, &resolved, None) {
        Ok(env) => job_environment(&config.env, &env),
        Err(message) => assert_no_marker(&message, has_marker, "building the environment"),
    }
}

fn lookup<'e>(env: &'e [(String, String)], name: &str) -> Option<&'e str> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Only `pass`/`pass-all` variables reach a job, and never simplevisor's own credentials unless
/// `pass` names them.
fn job_environment(settings: &EnvSettings, env: &[(String, String)]) {
    for (name, _) in env {
        let named = settings.pass.contains(name);
        assert!(named || settings.pass_all, "{name} passed without pass");
        assert!(
            named || !CREDENTIALS.contains(&name.as_str()),
            "{name} passed by pass-all"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// reference: `type:path:field`.
// ---------------------------------------------------------------------------------------------

/// `type:path:field` parsing of `data` (lossily decoded, as simplevisor reads its environment):
///
/// - accepted exactly when there are three `:`-separated parts, the type is known, path and
///   field are not empty, the field is one the type has, and a `pki` path is `ROLE/NAME`;
/// - an accepted reference prints back to the same text;
/// - an error is short and never quotes the whole value;
/// - `environment::plan` agrees, names the variable and its list entry, and with `--no-vault`
///   parses nothing; `environment::build` puts the resolved value in place of the reference.
pub fn reference(data: &[u8]) {
    let value = String::from_utf8_lossy(data);
    let value = &*value;
    let result = environment::parse_reference(value);
    assert_eq!(
        result.is_ok(),
        reference_is_valid(value),
        "parse_reference({value:?}) = {result:?}"
    );
    match &result {
        Ok(reference) => {
            let kind = match reference.kind {
                environment::SecretKind::Db => "db",
                environment::SecretKind::Secret => "secret",
                environment::SecretKind::AwsUser => "aws-user",
                environment::SecretKind::Pki => "pki",
            };
            assert_eq!(
                format!("{kind}:{}:{}", reference.path, reference.field),
                value
            );
        }
        Err(message) => {
            assert!(message.len() <= 512, "a {} byte message", message.len());
            // The type and the field may be quoted (shortened), never the whole value.
            assert!(
                !message.contains(&format!("\"{value}\"")),
                "the message quotes the value"
            );
        }
    }

    let settings = EnvSettings {
        pass: vec!["REF".into()],
        vault_replace: vec!["OTHER".into(), "REF".into()],
        ..EnvSettings::default()
    };
    let process_env = vec![("REF".to_string(), value.to_string())];
    match environment::plan(&settings, &process_env, false) {
        Ok(plan) => {
            let reference = result
                .as_ref()
                .expect("plan accepted what parse_reference rejects");
            assert_eq!(plan.replacements, [("REF".to_string(), reference.clone())]);
            assert!(plan.needs_vault);
            let resolved = BTreeMap::from([("REF".to_string(), format!("{MARKER}-resolved"))]);
            let env = environment::build(&settings, &process_env, &plan, &resolved, None)
                .expect("an environment without templates always builds");
            assert_eq!(env, [("REF".to_string(), format!("{MARKER}-resolved"))]);
        }
        Err(problems) => {
            let message = result.expect_err("plan rejected what parse_reference accepts");
            assert_eq!(problems.len(), 1);
            assert_eq!(problems[0].path, "env.vault-replace[1]");
            assert_eq!(problems[0].message, format!("REF: {message}"));
        }
    }
    let plan = environment::plan(&settings, &process_env, true).expect("--no-vault parses nothing");
    assert!(plan.replacements.is_empty() && !plan.needs_vault);
}

/// The reference grammar, written independently of `parse_reference`.
fn reference_is_valid(value: &str) -> bool {
    let mut parts = value.split(':');
    let (Some(kind), Some(path), Some(field), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if path.is_empty() || field.is_empty() {
        return false;
    }
    match kind {
        "db" => ["Username", "Password"].contains(&field),
        "aws-user" => ["KeyId", "SecretKey", "SessionToken"].contains(&field),
        "pki" => {
            ["Certificate", "PrivateKey", "IssuingCA", "CAChain"].contains(&field)
                && path
                    .split_once('/')
                    .is_some_and(|(role, name)| !role.is_empty() && !name.is_empty())
        }
        "secret" => true,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// template: Go `text/template` rendering of `vault-template` variables.
// ---------------------------------------------------------------------------------------------

/// Template rendering. `data` (lossily decoded) is the template source, up to an optional NUL;
/// what follows the NUL is appended to the secret value of `.A` (environment values cannot hold
/// a NUL, so no template is lost).
///
/// - rendering is deterministic;
/// - text without `{{` renders as itself;
/// - error messages never quote a context value (all of which hold [`MARKER`]);
/// - no template function panics (with `panic = "abort"`, the release binary would abort);
/// - `environment::plan` accepts a template exactly when it renders with placeholders, and
///   `environment::build` then renders it with the real values, or fails without quoting one.
pub fn template(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let (source, extra) = input.split_once('\0').unwrap_or((&*input, ""));
    let has_marker = source.contains(MARKER);
    let context = BTreeMap::from([
        ("A".to_string(), format!("{MARKER}-a{extra}")),
        ("B".to_string(), format!("{MARKER}-b:p@ss word/%?&")),
    ]);
    let result = template::render(source, &context);
    assert_eq!(
        result,
        template::render(source, &context),
        "rendering is not deterministic"
    );
    if !source.contains("{{") {
        assert_eq!(result.as_deref(), Ok(source), "plain text changed");
    }
    if let Err(message) = &result {
        assert_no_marker(message, has_marker, "a template error");
        // gotmpl turns a panic in a template function into an error with `catch_unwind`; the
        // release binary is built with `panic = "abort"`, where that panic would abort.
        assert!(
            source.contains("panicked") || !message.contains("panicked"),
            "a template function panicked: {message}"
        );
    }

    let settings = EnvSettings {
        pass: vec!["T".into()],
        vault_replace: vec!["A".into(), "B".into()],
        vault_template: vec!["T".into()],
        ..EnvSettings::default()
    };
    let process_env: Vec<(String, String)> = [
        ("A", "db:prod:Username"),
        ("B", "secret:app:password"),
        ("T", source),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let placeholders = BTreeMap::from([
        ("A".to_string(), "<A>".to_string()),
        ("B".to_string(), "<B>".to_string()),
    ]);
    let with_placeholders = template::render(source, &placeholders);
    match environment::plan(&settings, &process_env, false) {
        Ok(plan) => {
            assert!(
                with_placeholders.is_ok(),
                "plan accepted a failing template"
            );
            assert_eq!(plan.templates, [("T".to_string(), source.to_string())]);
            match environment::build(&settings, &process_env, &plan, &context, None) {
                Ok(env) => assert_eq!(
                    Ok(env),
                    result.map(|rendered| vec![("T".to_string(), rendered)])
                ),
                Err(message) => {
                    assert!(result.is_err(), "build failed, render did not: {message}");
                    assert_no_marker(&message, has_marker, "building the environment");
                }
            }
        }
        Err(problems) => {
            assert!(
                with_placeholders.is_err(),
                "plan rejected a rendering template"
            );
            assert_eq!(problems.len(), 1);
            assert_eq!(problems[0].path, "env.vault-template[0]");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// framing: line framing and record encoding.
// ---------------------------------------------------------------------------------------------

/// Line framing + record encoding of a job's output stream. `data` is
/// `[flags, pad, seed, stream bytes…]`:
///
/// - `flags` bit 0: the job has `log-format: json`; bit 1: stream 1 (stderr) rather than 0;
///   bit 2: insert `pad` bytes `a` at the first 0x01 of the stream (or in front), so lines near
///   and over 64 KiB are reached with small inputs, their length `MAX_MESSAGE + 4 - pad`;
///   bit 3: a process name that needs escaping; bit 4: time `u64::MAX`;
/// - `seed`: how the stream is cut into reads (0: one read).
///
/// Invariants: the records are the stream's lines (`\n`-separated, a `\r` before the `\n` or at
/// the end of the stream dropped), a line over `MAX_MESSAGE` bytes cut into chunks of at most
/// `MAX_MESSAGE` bytes, never inside a UTF-8 character and no shorter than needed for that,
/// whatever the reads; every record is one line that `serde_json` parses, with the keys
/// `process`, `time`, `stream`, `message` in order and the right values, and its message is the
/// chunk decoded lossily as UTF-8, or, for a JSON job, the object the chunk holds.
pub fn framing(data: &[u8]) {
    let [flags, pad, seed, rest @ ..] = data else {
        return;
    };
    let format = if flags & 1 != 0 {
        LogFormat::Json
    } else {
        LogFormat::Text
    };
    let stream_number = (flags >> 1) & 1;
    let process = if flags & 8 != 0 {
        "we\"ird\\näme\u{1}\u{7f}\u{2028}"
    } else {
        "web"
    };
    let time = if flags & 16 != 0 {
        u64::MAX
    } else {
        u64::from(*seed)
    };
    let stream = if flags & 4 != 0 {
        let (at, after) = match rest.iter().position(|&b| b == 1) {
            Some(at) => (at, at + 1),
            None => (0, 0),
        };
        let mut stream = rest[..at].to_vec();
        stream.resize(at + MAX_MESSAGE + 4 - usize::from(*pad), b'a');
        stream.extend_from_slice(&rest[after..]);
        stream
    } else {
        rest.to_vec()
    };

    let chunks = frame(&stream, *seed);
    assert_eq!(chunks, frame(&stream, 0), "framing depends on the reads");
    check_chunks(&stream, &chunks);

    let mut head = RecordHead::new(process, stream_number);
    for (chunk, _) in &chunks {
        let mut out = Vec::new();
        head.record(&mut out, time, chunk, format);
        check_record(&out, process, time, stream_number, chunk, format);
    }
}

/// Frames `stream` in reads whose sizes `seed` picks (one read for 0), then ends it.
fn frame(stream: &[u8], seed: u8) -> Vec<(Vec<u8>, bool)> {
    let mut framer = Framer::new();
    let mut chunks = Vec::new();
    let mut state = u32::from(seed);
    let mut rest = stream;
    while !rest.is_empty() {
        let size = if seed == 0 {
            rest.len()
        } else {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            // Mostly small reads, sometimes large ones.
            let limit = if state & 0x10 != 0 { 70_000 } else { 16 };
            1 + (state >> 8) as usize % limit
        };
        let (read, next) = rest.split_at(size.min(rest.len()));
        framer.push(read, |m, whole| chunks.push((m.to_vec(), whole)));
        rest = next;
    }
    framer.finish(|m, whole| chunks.push((m.to_vec(), whole)));
    chunks
}

/// The stream's lines as the contract defines them.
fn lines(stream: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
        .into_iter()
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .collect()
}

fn check_chunks(stream: &[u8], chunks: &[(Vec<u8>, bool)]) {
    let mut chunks = chunks.iter();
    for line in lines(stream) {
        if line.len() <= MAX_MESSAGE {
            let (chunk, whole) = chunks.next().expect("a line without its record");
            assert_eq!(chunk.as_slice(), line, "a line changed");
            assert!(*whole, "a line of {} bytes marked as cut", line.len());
            continue;
        }
        let mut at = 0;
        while at < line.len() {
            let (chunk, whole) = chunks.next().expect("a cut line without its last chunk");
            assert!(!*whole, "a chunk of a cut line marked whole");
            assert!(!chunk.is_empty(), "an empty chunk");
            assert!(
                chunk.len() <= MAX_MESSAGE,
                "a chunk of {} bytes",
                chunk.len()
            );
            assert!(
                line[at..].starts_with(chunk),
                "a chunk that is not the next part of its line"
            );
            at += chunk.len();
            if at < line.len() {
                check_cut(line, at, chunk.len());
            }
        }
    }
    assert!(chunks.next().is_none(), "records beyond the stream's lines");
}

/// A line is cut at `at` after a chunk of `len` bytes: not inside a character, and at
/// `MAX_MESSAGE` bytes unless the character there would be split.
fn check_cut(line: &[u8], at: usize, len: usize) {
    for start in at.saturating_sub(3)..at {
        for width in 2..=4 {
            let end = start + width;
            let is_one_character = |bytes: &[u8]| {
                std::str::from_utf8(bytes).is_ok_and(|text| text.chars().count() == 1)
            };
            if end > at && end <= line.len() && is_one_character(&line[start..end]) {
                panic!("a cut at byte {at} splits the character at byte {start}");
            }
        }
    }
    if len < MAX_MESSAGE {
        assert!(
            len + 3 >= MAX_MESSAGE && matches!(line[at], 0xC2..=0xF4),
            "a chunk of {len} bytes cut before {:#x}",
            line[at]
        );
    }
}

/// The JSON object a JSON job's chunk is embedded as, when it is one.
fn embedded_object(chunk: &[u8]) -> Option<Value> {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = chunk.iter().position(|b| !is_space(b))?;
    let end = chunk.iter().rposition(|b| !is_space(b))? + 1;
    let trimmed = &chunk[start..end];
    if trimmed.first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice::<Value>(trimmed)
        .ok()
        .filter(Value::is_object)
}

fn check_record(out: &[u8], process: &str, time: u64, stream: u8, chunk: &[u8], format: LogFormat) {
    assert_eq!(out.last(), Some(&b'\n'), "a record without its newline");
    assert_eq!(
        out.iter().filter(|&&b| b == b'\n').count(),
        1,
        "a record of several lines"
    );
    assert!(!out.contains(&b'\r'), "a raw carriage return in a record");
    let record: Value = match serde_json::from_slice(out) {
        Ok(record) => record,
        Err(error) => panic!(
            "a record that is not JSON ({error}): {}",
            String::from_utf8_lossy(out)
        ),
    };
    let mut expected_start = b"{\"process\":".to_vec();
    expected_start.extend_from_slice(&serde_json::to_vec(process).unwrap_or_default());
    expected_start
        .extend_from_slice(format!(",\"time\":{time},\"stream\":{stream},\"message\":").as_bytes());
    assert!(out.starts_with(&expected_start), "keys out of order");
    let object = record.as_object().expect("a record that is not an object");
    assert_eq!(object.len(), 4, "a record with other keys");
    assert_eq!(record["process"], process);
    assert_eq!(record["time"], time);
    assert_eq!(record["stream"], stream);
    let expected = match format {
        LogFormat::Json => embedded_object(chunk),
        LogFormat::Text => None,
    };
    match expected {
        Some(object) => assert_eq!(record["message"], object, "an embedded object changed"),
        None => assert_eq!(
            record["message"],
            String::from_utf8_lossy(chunk).as_ref(),
            "the message does not round-trip"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// control: one request line of the control socket, `control::protocol::Request::parse`.
// ---------------------------------------------------------------------------------------------

/// The top-level keys of a JSON object in the order written, duplicates included; `None` when
/// the input is not a JSON object.
fn top_level_keys(data: &[u8]) -> Option<Vec<String>> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<serde::de::IgnoredAny>()?;
                keys.push(key);
            }
            Ok(keys)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(data);
    let keys = serde::Deserializer::deserialize_map(&mut deserializer, Keys).ok()?;
    deserializer.end().ok()?;
    Some(keys)
}

/// The request an independent reading of the protocol makes of `data`, or `None` when it must
/// be refused: a JSON object, each key once, `command` a known name, only the keys that command
/// takes, each of its type (`live` a boolean, `signal` a string, `jobs` a non-empty list of
/// strings).
fn expected_request(data: &[u8]) -> Option<Request> {
    let keys = top_level_keys(data)?;
    let unique: std::collections::BTreeSet<&String> = keys.iter().collect();
    if unique.len() != keys.len() {
        return None;
    }
    let value: Value = serde_json::from_slice(data).ok()?;
    let command = value.get("command")?.as_str()?;
    let takes: &[&str] = match command {
        "status" | "reload" | "rotate" => &["command"],
        "health" => &["command", "live"],
        "signal" => &["command", "signal", "jobs"],
        "restart" | "stop" | "start" => &["command", "jobs"],
        _ => return None,
    };
    if keys.iter().any(|k| !takes.contains(&k.as_str())) {
        return None;
    }
    let jobs = || -> Option<Vec<String>> {
        let list = value.get("jobs")?.as_array()?;
        let names: Option<Vec<String>> = list
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect();
        names.filter(|n| !n.is_empty())
    };
    Some(match command {
        "status" => Request::Status,
        "reload" => Request::Reload,
        "rotate" => Request::Rotate,
        "health" => Request::Health {
            live: match value.get("live") {
                None => false,
                Some(live) => live.as_bool()?,
            },
        },
        "signal" => Request::Signal {
            signal: value.get("signal")?.as_str()?.to_string(),
            jobs: jobs()?,
        },
        other => Request::Jobs {
            command: JobCommand::parse(other)?,
            jobs: jobs()?,
        },
    })
}

pub fn control(data: &[u8]) {
    let parsed = Request::parse(data);
    assert_eq!(parsed, Request::parse(data), "parsing is deterministic");
    match (&parsed, expected_request(data)) {
        (Ok(request), Some(expected)) => {
            assert_eq!(request, &expected, "read differently");
            let again = Request::parse(request.to_json().to_string().as_bytes());
            assert_eq!(again.as_ref(), Ok(request), "a request does not round-trip");
            assert!(!request.describe().is_empty());
        }
        (Err(error), None) => {
            assert!(!error.is_empty(), "a refusal without a reason");
            // Names and keys are quoted with a limit: a huge request makes a short answer.
            assert!(error.len() <= 1024, "a refusal of {} bytes", error.len());
        }
        (Ok(request), None) => panic!("accepted what must be refused: {request:?}"),
        (Err(error), Some(expected)) => panic!("refused {expected:?}: {error}"),
    }
}

// ---------------------------------------------------------------------------------------------
// http: the metrics listener's request parser and buffer, and label escaping.
// ---------------------------------------------------------------------------------------------

/// The first byte seeds the sizes of the pieces the rest (a connection's bytes) arrives in.
///
/// - `metrics::http::parse` of the bytes: a whole request is at most 8 KiB, no longer than the
///   bytes, parses the same from its own bytes alone, and its path has no query; a body still
///   to come fits the limit; a head still to come is not over the limit; a refusal is 400,
///   413 or 431;
/// - `metrics::http::Buffer` fed the pieces, parsing only when it says so, finds exactly the
///   requests that parsing the whole stream request after request finds, and the refusal too
///   unless the line it is in has not ended yet (then parsing what it still holds finds it);
/// - an answer to `HEAD` has the headers of the `GET` answer and no body;
/// - a job name of any bytes stays inside its label: the exposition has as many lines as with
///   a plain name.
pub fn http(data: &[u8]) {
    use simplevisor::metrics::exposition::{JobMetrics, MetricsSnapshot, render};
    use simplevisor::metrics::http::{Buffer, MAX_REQUEST, Parse, Response, Status, parse};

    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    match parse(stream) {
        Parse::Complete(head, length) => {
            assert!(length <= stream.len() && length <= MAX_REQUEST);
            assert_eq!(
                parse(&stream[..length]),
                Parse::Complete(head.clone(), length)
            );
            assert!(!head.path.contains(['?', '#']), "{:?}", head.path);
        }
        Parse::Body(total) => assert!(stream.len() < total && total <= MAX_REQUEST),
        Parse::Partial => assert!(stream.len() <= MAX_REQUEST),
        Parse::Invalid(status) => assert!(
            matches!(
                status,
                Status::BadRequest | Status::ContentTooLarge | Status::HeadersTooLarge
            ),
            "{status:?}"
        ),
    }

    // The requests found by parsing the whole stream, one after the other.
    let mut expected = Vec::new();
    let mut rest = stream;
    loop {
        let blank = rest
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        rest = &rest[blank..];
        if rest.is_empty() {
            break;
        }
        match parse(rest) {
            Parse::Complete(head, length) => {
                expected.push(Parse::Complete(head, length));
                rest = &rest[length..];
            }
            Parse::Invalid(status) => {
                expected.push(Parse::Invalid(status));
                break;
            }
            Parse::Partial | Parse::Body(_) => break,
        }
    }
    // The same stream in pieces of 1 to 64 bytes, as the buffer sees it.
    let mut found = Vec::new();
    let mut buffer = Buffer::default();
    let mut state = u32::from(seed) | 1;
    let mut at = 0;
    'pieces: while at < stream.len() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = 1 + (state % 64) as usize;
        let end = (at + size).min(stream.len());
        buffer.extend(&stream[at..end]);
        at = end;
        loop {
            match buffer.parse() {
                Parse::Complete(head, length) => {
                    found.push(Parse::Complete(head, length));
                    buffer.consume(length);
                }
                Parse::Invalid(status) => {
                    found.push(Parse::Invalid(status));
                    break 'pieces;
                }
                Parse::Partial | Parse::Body(_) => break,
            }
        }
    }
    if found != expected {
        // Only a refusal in a line that has not ended may still be pending.
        let leftover = buffer.as_bytes();
        let (last, before) = expected.split_last().unwrap();
        assert_eq!(found, before);
        assert!(matches!(last, Parse::Invalid(_)), "{expected:?} {found:?}");
        assert_eq!(&parse(leftover), last);
        let ended = leftover
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        assert!(
            ended == 0 || !matches!(parse(&leftover[..ended]), Parse::Invalid(_)),
            "a refusal in an ended line was missed: {leftover:?}"
        );
    }

    let text = String::from_utf8_lossy(&stream[..stream.len().min(200)]).into_owned();
    let response = Response::text(Status::Ok, &text);
    let get = response.encode(false, false);
    let head = response.encode(true, false);
    assert!(get.starts_with(&head) && &get[head.len()..] == text.as_bytes());

    let snapshot = |name: &str| MetricsSnapshot {
        jobs: vec![JobMetrics {
            name: name.to_string(),
            kind: "main",
            state: "running",
            ..JobMetrics::default()
        }],
        ..MetricsSnapshot::default()
    };
    let lines = |text: String| text.lines().count();
    assert_eq!(
        lines(render(&snapshot(&text))),
        lines(render(&snapshot("web")))
    );
}
