//! A throwaway PostgreSQL cluster: `initdb` into a temp dir (as the `postgres` user when we are
//! root, since PostgreSQL refuses to run as root), listening on a free loopback port with
//! password (SCRAM) authentication over TCP, stopped on drop.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::{TempDir, free_port, skip};

pub struct Postgres {
    pub port: u16,
    /// The superuser `postgres`'s password.
    pub password: String,
    bin: PathBuf,
    dir: TempDir,
}

fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// `program args...`, as the `postgres` user when we are root.
fn as_owner(program: PathBuf) -> Command {
    if nix::unistd::geteuid().is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn check(what: &str, output: std::io::Result<Output>) {
    let output = output.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Postgres {
    /// `None` (after a skip message) when PostgreSQL is not installed.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            skip("PostgreSQL (initdb) not found under /usr/lib/postgresql");
            return None;
        };
        let dir = TempDir::new("pg");
        if nix::unistd::geteuid().is_root() {
            let Ok(Some(user)) = nix::unistd::User::from_name("postgres") else {
                skip("no postgres user");
                return None;
            };
            std::os::unix::fs::chown(dir.path(), Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .expect("chown temp dir");
        }
        let password = format!("pw{}", std::process::id());
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, &password).expect("password file");
        let data = dir.path().join("data");
        check(
            "initdb",
            as_owner(bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .args(["-E", "UTF8", "--no-sync"])
                .output(),
        );
        for _ in 0..5 {
            let port = free_port();
            let started = as_owner(bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.path().join("log"))
                .arg("-o")
                .arg(format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                    dir.path().display()
                ))
                .args(["-w", "-t", "30", "start"])
                .output()
                .expect("pg_ctl");
            if started.status.success() {
                return Some(Postgres {
                    port,
                    password,
                    bin,
                    dir,
                });
            }
        }
        panic!("PostgreSQL did not start");
    }

    /// Runs `sql` over TCP as `user` with `password`; the output rows, or psql's error.
    pub fn query_as(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", user, "-d", "postgres", "-w", "-At", "-c", sql])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }

    /// Whether a role named `name` exists.
    pub fn role_exists(&self, name: &str) -> bool {
        let sql = format!(
            "select count(*) from pg_roles where rolname = '{}'",
            name.replace('\'', "''")
        );
        self.query_as("postgres", &self.password, &sql)
            .expect("superuser query")
            == "1"
    }

    /// Stops the server (fast, as a crash would); [`Postgres::start_again`] restarts it.
    pub fn stop(&self) {
        check(
            "pg_ctl stop",
            as_owner(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-m", "immediate", "-w", "stop"])
                .output(),
        );
    }

    /// Starts the stopped server again on its port.
    pub fn start_again(&self) {
        check(
            "pg_ctl start",
            as_owner(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .arg("-l")
                .arg(self.dir.path().join("log"))
                .arg("-o")
                .arg(format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                    self.port,
                    self.dir.path().display()
                ))
                .args(["-w", "-t", "30", "start"])
                .output(),
        );
    }

    /// The `psql` binary (for jobs that log in).
    pub fn psql(&self) -> PathBuf {
        self.bin.join("psql")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_owner(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
