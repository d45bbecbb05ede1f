//! The documentation is checked like code:
//!
//! - every fenced `json` block of README.md and docs/*.md is a complete configuration that
//!   `simplevisor check --no-vault` accepts, unless the line before its fence is an HTML comment
//!   starting with `<!-- docs-test: fragment` (then it must still be valid JSON);
//! - every `.json` file under examples/ passes `simplevisor check --no-vault`;
//! - every command of a `sh` block in README.md is run, or exercised in the equivalent way
//!   [`exercise_readme_command`] documents (a command it does not know fails the test);
//! - every relative link in README.md, CHANGELOG.md and docs/*.md, and every `examples/...`
//!   path named in a file under examples/, resolves to a file inside the repository (and a
//!   `#fragment` to a heading of the linked page).
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
/// what it said.
fn check_rejects(text: &str) -> Option<String> {
    let dir = TempDir::new("docs");
    let config = dir.write("simplevisor.json", text);
    let out = Command::new(BIN)
        .args(["check", "--no-vault", "--config"])
        .arg(&config)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
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
