//! The documentation is checked like code:
//!
//! - every fenced `json` block of README.md and docs/*.md is a complete configuration that
//!   `simplevisor check --no-vault` accepts, unless the line before its fence is an HTML comment
//!   starting with `<!-- docs-test: fragment` (then it must still be valid JSON);
//! - every `.json` file under examples/ passes `simplevisor check --no-vault` (but the Grafana
//!   dashboard, which is not a configuration);
//! - every command of a `sh` block in README.md is run, or exercised in the equivalent way
//!   [`exercise_readme_command`] documents (a command it does not know fails the test);
//! - every relative link in README.md, CHANGELOG.md and docs/*.md, and every `examples/...`
//!   path named in a file under examples/, resolves to a file inside the repository (and a
//!   `#fragment` to a heading of the linked page);
//! - claims of the prose that were once false stay true: the signals that are not forwarded
//!   (alike on every page, and as src/signals.rs has them), the keys docs/migrating.md calls
//!   new, the JSON nesting limit of docs/logging.md, what a client of another uid sees
//!   (docs/operations.md), every unusable Vault setting reported at once (docs/vault.md), the
//!   image recipes and Kubernetes examples; and no page names an issue number.
//!
//! The users and groups a configuration's `run-as` names must exist: as root, this test creates
//! the missing ones; otherwise the configuration is skipped with a notice, or fails under
//! `CI=true`.

mod harness;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use harness::{BIN, TempDir, is_root, require};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const FRAGMENT_MARK: &str = "<!-- docs-test: fragment";

/// README.md, CHANGELOG.md and every page of docs/.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![
        Path::new(ROOT).join("README.md"),
        Path::new(ROOT).join("CHANGELOG.md"),
    ];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    files.extend(pages);
    files
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(ROOT)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A fenced code block: its info string, its text, the line of its fence (1-based) and the
/// last non-blank line before the fence.
struct Block {
    lang: String,
    text: String,
    line: usize,
    preceded_by: String,
}

fn fenced_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    let mut last_text = String::new();
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        match current.take() {
            Some(block) if trimmed.starts_with("```") => blocks.push(block),
            Some(mut block) => {
                block.text.push_str(line);
                block.text.push('\n');
                current = Some(block);
            }
            None if trimmed.starts_with("```") => {
                current = Some(Block {
                    lang: trimmed.trim_start_matches('`').trim().to_string(),
                    text: String::new(),
                    line: i + 1,
                    preceded_by: last_text.clone(),
                });
            }
            None => {
                if !trimmed.is_empty() {
                    last_text = trimmed.to_string();
                }
            }
        }
    }
    assert!(current.is_none(), "an unclosed code block");
    blocks
}

fn names_in_file(file: &str) -> BTreeSet<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(':').next().map(str::to_string))
        .collect()
}

/// The users and groups named by the `run-as` values of `config`.
fn run_as_names(config: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut users, mut groups) = (BTreeSet::new(), BTreeSet::new());
    let named = |name: &str| !name.is_empty() && name.parse::<u32>().is_err();
    for kind in ["init", "main"] {
        let Some(jobs) = config["jobs"][kind].as_array() else {
            continue;
        };
        for run_as in jobs.iter().filter_map(|job| job["run-as"].as_str()) {
            let (user, group) = run_as.split_once(':').unwrap_or((run_as, ""));
            if named(user) {
                users.insert(user.to_string());
            }
            if named(group) {
                groups.insert(group.to_string());
            }
        }
    }
    (users, groups)
}

/// Whether every user and group a `run-as` of `config` names exists. As root, missing ones are
/// created (system accounts without a home or a login shell), so that the documented
/// configurations are checked as they are written; otherwise the configuration is skipped
/// with a notice (or fails under `CI=true`).
fn run_as_names_exist(config: &Value, what: &str) -> bool {
    // Tests run in parallel threads; two creating the same account would race.
    static CREATING: Mutex<()> = Mutex::new(());
    let _creating = CREATING.lock().unwrap_or_else(|e| e.into_inner());
    let (users, groups) = run_as_names(config);
    let missing = || {
        let known_users = names_in_file("/etc/passwd");
        let known_groups = names_in_file("/etc/group");
        let mut missing: Vec<String> = groups
            .iter()
            .filter(|g| !known_groups.contains(*g))
            .map(|g| format!("group {g}"))
            .collect();
        missing.extend(
            users
                .iter()
                .filter(|u| !known_users.contains(*u))
                .map(|u| format!("user {u}")),
        );
        missing
    };
    if !missing().is_empty() && is_root() {
        for entry in missing() {
            let (kind, name) = entry.split_once(' ').unwrap();
            let mut command = Command::new(if kind == "group" {
                "groupadd"
            } else {
                "useradd"
            });
            command.arg("--system");
            if kind == "user" {
                command.args(["--no-create-home", "--home-dir", "/nonexistent"]);
                command.args(["--shell", "/usr/sbin/nologin"]);
                // A group of the same name (made above for "name:name") becomes its group.
                if names_in_file("/etc/group").contains(name) {
                    command.args(["--gid", name]);
                } else {
                    command.arg("--user-group");
                }
            }
            let status = command.arg(name).status();
            eprintln!("docs test: created {entry} for {what}: {status:?}");
        }
    }
    let missing = missing();
    require(
        &format!("{} named by {what}", missing.join(", ")),
        missing.is_empty(),
    )
}

/// `simplevisor check --no-vault` on `text` in a clean environment: `None` if accepted, else
/// what it said. Each `vault-replace` variable is set (to a placeholder), as where the
/// configuration runs: a file's template must be able to use it.
fn check_rejects(text: &str) -> Option<String> {
    let dir = TempDir::new("docs");
    let config = dir.write("simplevisor.json", text);
    let replaced: Vec<String> = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|config| config["env"]["vault-replace"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|name| name.as_str().map(String::from))
        .collect();
    let out = Command::new(BIN)
        .args(["check", "--no-vault", "--config"])
        .arg(&config)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(replaced.iter().map(|name| (name, "placeholder")))
        .output()
        .unwrap();
    if out.status.code() == Some(0) {
        None
    } else {
        Some(format!(
            "exit status {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn every_json_block_of_the_docs_is_a_valid_configuration_or_a_marked_fragment() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let markdown = std::fs::read_to_string(&file).unwrap();
        for block in fenced_blocks(&markdown)
            .into_iter()
            .filter(|b| b.lang == "json")
        {
            let at = format!("{}:{}", relative(&file), block.line);
            let value: Value = match serde_json::from_str(&block.text) {
                Ok(value) => value,
                Err(error) => {
                    failures.push(format!("{at}: not valid JSON: {error}"));
                    continue;
                }
            };
            if block.preceded_by.starts_with(FRAGMENT_MARK) {
                continue;
            }
            if !run_as_names_exist(&value, &at) {
                continue;
            }
            checked += 1;
            if let Some(said) = check_rejects(&block.text) {
                failures.push(format!(
                    "{at}: `simplevisor check` rejects this block ({said}); fix it, or mark a \
                     partial example with `{FRAGMENT_MARK} ... -->` on the line before its fence"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{checked} configuration block(s) checked");
}

#[test]
fn every_example_configuration_passes_check() {
    let mut failures = Vec::new();
    let configs: Vec<PathBuf> = files_under(&Path::new(ROOT).join("examples"))
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        // A Grafana dashboard, not a configuration; its queries are checked with the metrics.
        .filter(|path| !path.ends_with("grafana-dashboard.json"))
        .collect();
    assert!(configs.len() >= 3, "examples/ lost its configurations");
    for config in configs {
        let text = std::fs::read_to_string(&config).unwrap();
        let value: Value = match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(error) => {
                failures.push(format!("{}: not valid JSON: {error}", relative(&config)));
                continue;
            }
        };
        if !run_as_names_exist(&value, &relative(&config)) {
            continue;
        }
        if let Some(said) = check_rejects(&text) {
            failures.push(format!("{}: {said}", relative(&config)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The commands of README.md's `sh` blocks, continuation lines joined, comments dropped.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let mut commands = Vec::new();
    for block in fenced_blocks(&readme)
        .into_iter()
        .filter(|b| b.lang == "sh")
    {
        let mut pending = String::new();
        for line in block.text.lines() {
            let line = line.split(" #").next().unwrap_or("").trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.strip_suffix('\\') {
                Some(start) => pending.push_str(start),
                None => {
                    pending.push_str(line);
                    commands.push(std::mem::take(&mut pending));
                }
            }
        }
    }
    commands
}

/// How each README command is exercised here:
///
/// - `cargo run -- ARGS`: the binary cargo builds for it (this test's own `simplevisor`) runs
///   with ARGS from the repository root. The example supervises for ever, so it runs until it
///   has shown what the README says it does, a job that fails and is restarted (at most
///   20 s), then gets `SIGTERM` (the Ctrl-C the README suggests): it must still be running
///   then, print only JSON records including job lines, and exit 0 after its shutdown record.
/// - `scripts/test`: runs the whole suite, this test included, so it is not run from here; it
///   must exist, be executable, parse (`bash -n`), and be what `.ci/run` runs, as the README
///   says.
fn exercise_readme_command(command: &str) -> Result<(), String> {
    if let Some(args) = command.strip_prefix("cargo run -- ") {
        return run_like_cargo_run(args.split_whitespace().collect());
    }
    match command {
        "scripts/test" => {
            let script = Path::new(ROOT).join("scripts/test");
            let meta = std::fs::metadata(&script).map_err(|e| format!("scripts/test: {e}"))?;
            if meta.permissions().mode() & 0o111 == 0 {
                return Err("scripts/test is not executable".into());
            }
            let syntax = Command::new("bash")
                .arg("-n")
                .arg(&script)
                .status()
                .map_err(|e| e.to_string())?;
            if !syntax.success() {
                return Err("scripts/test does not parse".into());
            }
            let ci = std::fs::read_to_string(Path::new(ROOT).join(".ci/run"))
                .map_err(|e| format!(".ci/run: {e}"))?;
            if !ci.lines().any(|l| l.trim() == "exec scripts/test") {
                return Err(".ci/run does not run scripts/test".into());
            }
            Ok(())
        }
        other => Err(format!(
            "README command `{other}` is not exercised by tests/docs.rs; add it to \
             exercise_readme_command"
        )),
    }
}

fn run_like_cargo_run(args: Vec<&str>) -> Result<(), String> {
    let mut child = Command::new(BIN)
        .args(&args)
        .current_dir(ROOT)
        .env_remove("SIMPLEVISOR_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let restarted = wait_for_a_restart(&received, &mut lines, Duration::from_secs(20));
    let early = child.try_wait().map_err(|e| e.to_string())?;
    // SAFETY: kill on the pid of a child we have not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("did not exit within 15 s of SIGTERM".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    reader.join().map_err(|_| "reader panicked")?;
    lines.extend(received.try_iter());
    let said = || lines.join("\n");
    if let Some(early) = early {
        return Err(format!("exited before SIGTERM ({early}):\n{}", said()));
    }
    if !restarted {
        return Err(format!("no job was restarted within 20 s:\n{}", said()));
    }
    if status.code() != Some(0) {
        return Err(format!("exit status {status} after SIGTERM:\n{}", said()));
    }
    let mut job_lines = 0;
    for line in &lines {
        let record: Value =
            serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line}"))?;
        let mut keys: Vec<&str> = record
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        if keys != ["message", "process", "stream", "time"] {
            return Err(format!("not a record: {line}"));
        }
        if record["process"] != "internal" {
            job_lines += 1;
        }
    }
    if job_lines == 0 {
        return Err(format!("no job printed anything:\n{}", said()));
    }
    let last = lines.last().map(String::as_str).unwrap_or("");
    let shutdown = lines
        .iter()
        .any(|l| l.contains("received TERM; shutting down"));
    if !shutdown || !last.contains("simplevisor exits with status 0") {
        return Err(format!("no graceful shutdown:\n{}", said()));
    }
    Ok(())
}

/// Reads records into `lines` until a job has been started again after its exit ("restarting
/// job NAME ...", then "job NAME started"); false if that does not come within `timeout` or
/// the output ends first.
fn wait_for_a_restart(
    received: &Receiver<String>,
    lines: &mut Vec<String>,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut restarting: Option<String> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = received.recv_timeout(left) else {
            return false;
        };
        let message = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|r| r["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        lines.push(line);
        if let Some(name) = &restarting {
            if message.starts_with(&format!("job {name} started")) {
                return true;
            }
        } else if let Some(rest) = message.strip_prefix("restarting job ") {
            restarting = rest.split(' ').next().map(str::to_string);
        }
    }
}

#[test]
fn every_readme_command_runs() {
    let commands = readme_commands();
    assert!(
        commands.iter().any(|c| c.starts_with("cargo run")),
        "the README lost its first command: {commands:?}"
    );
    let failures: Vec<String> = commands
        .iter()
        .filter_map(|c| {
            exercise_readme_command(c)
                .err()
                .map(|e| format!("`{c}`: {e}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// GitHub's anchor of a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces as `-`.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor_of(line.trim_start_matches('#')));
        }
    }
    out
}

/// The targets of inline links `[text](target)` and reference definitions `[x]: target`
/// outside code blocks and code spans, with their line numbers.
fn link_targets(markdown: &str) -> Vec<(usize, String)> {
    let mut in_code = false;
    let mut out = Vec::new();
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Code spans may show link syntax as an example: drop them first.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(n, _)| n % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            out.push((i + 1, target.to_string()));
            rest = &after[end..];
        }
        let trimmed = prose.trim_start();
        if trimmed.starts_with('[')
            && let Some((_, target)) = trimmed.split_once("]: ")
        {
            out.push((i + 1, target.trim().to_string()));
        }
    }
    out
}

#[test]
fn every_relative_link_resolves_inside_the_repository() {
    let root = Path::new(ROOT).canonicalize().unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let markdown = std::fs::read_to_string(&file).unwrap();
        let dir = file.parent().unwrap();
        for (line, target) in link_targets(&markdown) {
            let at = format!("{}:{line}", relative(&file));
            if target.is_empty() {
                failures.push(format!("{at}: an empty link"));
                continue;
            }
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let linked = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            let Ok(resolved) = linked.canonicalize() else {
                failures.push(format!("{at}: {target}: no such file"));
                continue;
            };
            if !resolved.starts_with(&root) {
                failures.push(format!("{at}: {target}: outside the repository"));
                continue;
            }
            if !fragment.is_empty() {
                let page = std::fs::read_to_string(&resolved).unwrap_or_default();
                if !anchors(&page).contains(fragment) {
                    failures.push(format!("{at}: {target}: no heading #{fragment} there"));
                }
            }
        }
    }
    // Paths the examples name (Dockerfile COPY sources, comments) must exist too.
    for file in files_under(&Path::new(ROOT).join("examples")) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (i, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(start) = rest.find("examples/") {
                let path: String = rest[start..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
                    .collect();
                rest = &rest[start + path.len()..];
                let path = path.trim_end_matches('.');
                checked += 1;
                if !root.join(path).exists() {
                    failures.push(format!(
                        "{}:{}: {path}: no such file",
                        relative(&file),
                        i + 1
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked > 10,
        "only {checked} links found: is the parser broken?"
    );
}

#[test]
fn the_parsers_find_what_they_should() {
    let md = "text\n<!-- docs-test: fragment -->\n```json\n{}\n```\n[a](x.md#b) `[c](no.md)`\n[r]: y.md\n## A heading, with `code`\n";
    let blocks = fenced_blocks(md);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].lang, "json");
    assert!(blocks[0].preceded_by.starts_with(FRAGMENT_MARK));
    assert_eq!(
        link_targets(md),
        [(6, "x.md#b".to_string()), (7, "y.md".to_string())]
    );
    assert!(anchors(md).contains("a-heading-with-code"));
}

// Claims of the prose, each kept true by a test.

/// Every run of white space as one space, so that a sentence wrapped over lines reads whole.
fn flattened(path: &str) -> String {
    let text = std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The code spans of `text`, in order.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The signals named in the `Not forwarded:` sentence of `path`.
fn not_forwarded_in(path: &str) -> BTreeSet<String> {
    let text = flattened(path);
    let Some((_, rest)) = text.split_once("Not forwarded: ") else {
        panic!("{path}: no sentence starting `Not forwarded:`");
    };
    let sentence = rest.split(". ").next().unwrap_or(rest);
    code_spans(sentence)
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_signals_not_forwarded_are_listed_alike_and_as_the_code_has_them() {
    // The code's list: the signals it never reads, plus those it acts on itself.
    let code = std::fs::read_to_string(Path::new(ROOT).join("src/signals.rs")).unwrap();
    let unhandled = code
        .split_once("const UNHANDLED")
        .and_then(|(_, rest)| rest.split_once("];"))
        .map(|(list, _)| list)
        .expect("src/signals.rs: const UNHANDLED");
    let mut expected: BTreeSet<String> = unhandled
        .split("libc::SIG")
        .skip(1)
        .map(|s| s.split(',').next().unwrap().trim().to_string())
        .collect();
    expected.extend(["TERM", "INT", "CHLD"].map(String::from));
    for path in ["README.md", "docs/behaviour.md", "docs/troubleshooting.md"] {
        assert_eq!(not_forwarded_in(path), expected, "{path}");
    }
}

#[test]
fn migrating_names_every_key_the_original_did_not_have() {
    const ORIGINAL: [&str; 11] = [
        "env.pass",
        "env.pass-all",
        "env.vault-token",
        "env.vault-replace",
        "env.vault-template",
        "jobs.init",
        "jobs.main",
        "cmd",
        "name",
        "run-as",
        "kill-signal",
    ];
    let configuration = std::fs::read_to_string(Path::new(ROOT).join("docs/configuration.md"));
    let keys: Vec<String> = configuration
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(key, _)| key.to_string()))
        .collect();
    assert!(
        keys.len() > 30,
        "the key tables of docs/configuration.md: {keys:?}"
    );
    let migrating = flattened("docs/migrating.md");
    let new = migrating
        .split_once("New, all optional:")
        .map(|(_, rest)| rest.split(". ").next().unwrap_or(rest))
        .expect("docs/migrating.md: the list of new keys");
    let named: BTreeSet<&str> = code_spans(new).into_iter().collect();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| !ORIGINAL.contains(&key.as_str()))
        .filter(|key| {
            // A key is named, or the object it belongs to is (`vault` for `vault.kv-mount`).
            // (`files` for `files[].path`).
            let parent = key
                .rsplit_once('.')
                .map(|(parent, _)| parent.trim_end_matches("[]"));
            !named.contains(key.as_str()) && !parent.is_some_and(|p| named.contains(p))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/migrating.md does not name {missing:?} as new"
    );
}

#[test]
fn logging_states_the_nesting_limit_of_embedded_objects() {
    let text = flattened("docs/logging.md");
    let depth: usize = text
        .split_once("nested at most ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("docs/logging.md: `nested at most N deep`");
    let dir = TempDir::new("docs-depth");
    let nested = |n: usize| format!("{}{{}}{}\n", r#"{"a":"#.repeat(n - 1), "}".repeat(n - 1));
    dir.write("within", &nested(depth));
    dir.write("beyond", &nested(depth + 1));
    let config = serde_json::json!({"control-socket": "", "jobs": {"main": [
        {"name": "within", "cmd": ["cat", dir.path().join("within")], "log-format": "json", "restart": "never"},
        {"name": "beyond", "cmd": ["cat", dir.path().join("beyond")], "log-format": "json", "restart": "never"}
    ]}});
    let config = dir.write("simplevisor.json", &config.to_string());
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("--no-vault")
        .output()
        .unwrap();
    // A record holding a 127-deep object is 128 deep itself, beyond what serde_json parses by
    // default: the record is told by the start of its message instead.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let message = |process: &str| {
        let start = format!(r#"{{"process":"{process}","#);
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| panic!("no record of {process}: {stdout}"));
        line.split_once(r#""message":"#).unwrap().1.to_string()
    };
    assert!(
        message("within").starts_with('{'),
        "{depth} levels are embedded"
    );
    assert!(
        message("beyond").starts_with('"'),
        "{} levels are a string",
        depth + 1
    );
}

#[test]
fn no_page_refers_to_an_issue_number_readers_cannot_look_up() {
    let mut files = markdown_files();
    files.extend(files_under(&Path::new(ROOT).join("examples")));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let words: Vec<&str> = text.split_whitespace().collect();
        for pair in words.windows(2) {
            let (word, next) = (pair[0].trim_start_matches('('), pair[1]);
            let number = next
                .trim_start_matches('#')
                .trim_end_matches([')', ',', '.', ':']);
            assert!(
                !(word.eq_ignore_ascii_case("issue")
                    && !number.is_empty()
                    && number.chars().all(|c| c.is_ascii_digit())),
                "{}: `{word} {next}`",
                relative(&file)
            );
        }
    }
}

#[test]
fn every_unusable_vault_setting_is_reported_at_once() {
    // docs/vault.md: check and run report every unusable setting, all of them.
    let dir = TempDir::new("docs-vault");
    let config = dir.write(
        "simplevisor.json",
        r#"{"env": {"vault-replace": ["DB_PASSWORD"]},
            "vault": {"auth": {"method": "approle", "secret-id-file": "/nonexistent/secret-id"}},
            "jobs": {"main": [{"cmd": ["true"]}]}}"#,
    );
    let expected = [
        "VAULT_ADDR is not set",
        "VAULT_CACERT /nonexistent/ca.pem",
        "VAULT_CLIENT_CERT /nonexistent/client.pem",
        "VAULT_ROLE_ID is not set",
        "vault.auth.secret-id-file /nonexistent/secret-id",
    ];
    for command in ["check", "run"] {
        let out = Command::new(BIN)
            .args([command, "--config"])
            .arg(&config)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("DB_PASSWORD", "db:app:Password")
            .env("VAULT_CACERT", "/nonexistent/ca.pem")
            .env("VAULT_CLIENT_CERT", "/nonexistent/client.pem")
            .env("VAULT_CLIENT_KEY", "/nonexistent/client.key")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{command}: {said}");
        for problem in expected {
            assert!(
                said.contains(problem),
                "{command}: no {problem:?} in {said}"
            );
        }
    }
}

#[test]
fn a_rejected_kill_signal_is_not_offered_as_a_valid_one() {
    let said = check_rejects(r#"{"jobs": {"main": [{"cmd": ["true"], "kill-signal": "NOPE"}]}}"#)
        .expect("an unknown signal is rejected");
    let names = said.split_once("valid names: ").map(|(_, n)| n).unwrap();
    let names: Vec<&str> = names.split([',', ' ', '\n']).collect();
    assert!(names.contains(&"KILL"), "{said}");
    assert!(!names.contains(&"STOP"), "{said}");
    // docs/configuration.md: STOP is rejected, since it only pauses a job.
    assert!(flattened("docs/configuration.md").contains("`kill-signal` `STOP` (it pauses a job"));
    let said = check_rejects(r#"{"jobs": {"main": [{"cmd": ["true"], "kill-signal": "STOP"}]}}"#);
    assert!(said.is_some_and(|s| s.contains("STOP cannot stop a job")));
}

#[test]
fn the_image_recipes_build_on_either_architecture() {
    let read = |path: &str| std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap();
    for path in ["examples/Dockerfile", "examples/kubernetes/Dockerfile"] {
        assert!(
            !read(path).contains("-unknown-linux-"),
            "{path} names a target; scripts/build-static prints the binary's path"
        );
    }
    let script = read("scripts/build-static");
    let target = script.lines().find(|l| l.starts_with("target=")).unwrap();
    assert!(
        target.contains("rustc -vV"),
        "scripts/build-static: {target}"
    );
    // The Dockerfiles' build context is the repository: without target/ (gigabytes).
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(|l| l.trim().trim_matches('/').to_string())
        .collect();
    for path in ["target", ".git", ".venv"] {
        assert!(ignored.iter().any(|l| l == path), ".dockerignore: {path}");
    }
}

#[test]
fn the_kubernetes_examples_name_what_they_need() {
    for path in [
        "examples/kubernetes-pod.yaml",
        "examples/kubernetes/deployment.yaml",
    ] {
        let text = std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .collect();
        // A fixed tag that a locally built or loaded image can match: ":latest" (or no tag)
        // makes Kubernetes pull every time.
        for image in lines.iter().filter_map(|l| l.strip_prefix("image: ")) {
            let image = image.split(" #").next().unwrap().trim();
            assert!(
                image.contains(':') && !image.ends_with(":latest"),
                "{path}: image {image}"
            );
        }
        assert!(
            lines.contains(&"imagePullPolicy: IfNotPresent"),
            "{path}: imagePullPolicy"
        );
        // Every ConfigMap a volume mounts is defined in the same file.
        for (i, line) in lines.iter().enumerate() {
            if *line != "configMap:" {
                continue;
            }
            let name = lines[i + 1].strip_prefix("name: ").unwrap();
            let defined = lines
                .windows(4)
                .any(|w| w[0] == "kind: ConfigMap" && w[2] == format!("name: {name}"));
            assert!(
                defined,
                "{path}: ConfigMap {name} is mounted but not defined"
            );
        }
    }
}

#[test]
fn operations_quotes_what_a_client_of_another_uid_sees() {
    if !require(
        "root and the svtest user",
        is_root() && harness::user_exists("svtest"),
    ) {
        return;
    }
    let text = flattened("docs/operations.md");
    let quoted = |start: &str| -> String {
        code_spans(&text)
            .into_iter()
            .find(|span| span.starts_with(start))
            .unwrap_or_else(|| panic!("docs/operations.md quotes no `{start}...`"))
            .to_string()
    };
    let unreachable = quoted("simplevisor: cannot reach simplevisor at PATH");
    let refused = quoted("simplevisor: permission denied: uid N");
    let dir = TempDir::new("docs-socket");
    let socket = dir.path().join("control.sock");
    let config = serde_json::json!({"control-socket": socket, "jobs": {"main": [
        {"name": "idle", "cmd": ["sleep", "100"]}
    ]}});
    let mut sv = harness::run(&config.to_string()).start();
    sv.wait_message("internal", "job idle started", harness::secs(10.0));
    let as_svtest = || {
        let out = Command::new("setpriv")
            .args(["--reuid=svtest", "--regid=svtest", "--clear-groups", "--"])
            .args([BIN, "status", "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    };
    let path = socket.display().to_string();
    assert_eq!(as_svtest(), unreachable.replace("PATH", &path));
    // Past the file's mode, the uid check refuses.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let uid = Command::new("id").args(["-u", "svtest"]).output().unwrap();
    let uid = String::from_utf8_lossy(&uid.stdout).trim().to_string();
    assert_eq!(as_svtest(), refused.replace("uid N", &format!("uid {uid}")));
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(harness::secs(10.0)), 0);
}
