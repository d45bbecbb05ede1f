//! `run-as`: parsing `"user"`, `"user:group"` and numeric ids, resolved against `/etc/passwd`
//! and `/etc/group`, which we read ourselves (no NSS: the binary is static and may run in an
//! empty `FROM scratch` root with just those two files).

use std::path::{Path, PathBuf};

/// The identity a job runs as, fully resolved before anything is spawned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups as `initgroups` computes them: `gid` plus every group that lists
    /// the user; just `gid` for a numeric user without a passwd entry.
    pub groups: Vec<u32>,
    /// The user's name, or the numeric uid as text when it has no passwd entry (for `USER`,
    /// `LOGNAME`).
    pub user: String,
    /// From `/etc/passwd`; `/` for a numeric id without an entry.
    pub home: String,
}

/// One line of `/etc/passwd`.
#[derive(Debug, Clone)]
struct User {
    name: String,
    uid: u32,
    home: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone)]
struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The user and group databases, read once.
#[derive(Debug, Clone, Default)]
pub struct UserDb {
    users: Vec<User>,
    groups: Vec<Group>,
}

impl UserDb {
    /// Reads `<etc>/passwd` and `<etc>/group`. A missing file is an empty database (numeric ids
    /// still work), any other read error is returned.
    pub fn load(etc: &Path) -> std::io::Result<UserDb> {
        let read = |name: &str| match std::fs::read_to_string(etc.join(name)) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        };
        Ok(UserDb::parse(&read("passwd")?, &read("group")?))
    }

    /// The system databases under `/etc`.
    pub fn system() -> std::io::Result<UserDb> {
        Self::load(&PathBuf::from("/etc"))
    }

    /// Parses the text of passwd and group files; malformed lines are skipped, as libc does.
    pub fn parse(passwd: &str, group: &str) -> UserDb {
        let fields = |line: &str| -> Option<Vec<String>> {
            let line = line.trim_end_matches('\r');
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            Some(line.split(':').map(str::to_string).collect())
        };
        let users = passwd
            .lines()
            .filter_map(fields)
            .filter(|f| f.len() >= 7)
            .filter_map(|f| {
                Some(User {
                    uid: f[2].parse().ok()?,
                    home: f[5].clone(),
                    name: f[0].clone(),
                })
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(fields)
            .filter(|f| f.len() >= 4)
            .filter_map(|f| {
                Some(Group {
                    gid: f[2].parse().ok()?,
                    members: f[3]
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect(),
                    name: f[0].clone(),
                })
            })
            .collect();
        UserDb { users, groups }
    }

    /// Resolves a `run-as` value. User only ⇒ group `root` (gid 0), as the original documents.
    /// The error says what is wrong in one sentence (used after the JSON path).
    pub fn resolve(&self, run_as: &str) -> Result<Identity, String> {
        let (user_part, group_part) = match run_as.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (run_as, None),
        };
        if user_part.is_empty() || group_part.is_some_and(|g| g.is_empty() || g.contains(':')) {
            return Err(format!(
                "{} is not a valid run-as; use \"user\", \"user:group\" or numeric ids like \"1000:1000\"",
                crate::quote::quoted(run_as)
            ));
        }
        // (uid_t)-1 means "leave unchanged" to the kernel: the job would keep our identity.
        for (what, part) in [("uid", Some(user_part)), ("gid", group_part)] {
            if part == Some("4294967295") {
                return Err(format!(
                    "{what} 4294967295 is not a usable id (the kernel reads it as \"no change\"); use a real {what}"
                ));
            }
        }
        let user = match user_part.parse::<u32>() {
            Ok(uid) => self.users.iter().find(|u| u.uid == uid).cloned().ok_or(uid),
            Err(_) => match self.users.iter().find(|u| u.name == user_part) {
                Some(u) => Ok(u.clone()),
                None => {
                    return Err(format!(
                        "user {} does not exist in /etc/passwd; create it or use a numeric uid",
                        crate::quote::quoted(user_part)
                    ));
                }
            },
        };
        let gid = match group_part {
            None => 0,
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => match self.groups.iter().find(|grp| grp.name == g) {
                    Some(grp) => grp.gid,
                    None => {
                        return Err(format!(
                            "group {} does not exist in /etc/group; create it or use a numeric gid",
                            crate::quote::quoted(g)
                        ));
                    }
                },
            },
        };
        Ok(match user {
            Ok(entry) => {
                let mut groups = vec![gid];
                for grp in &self.groups {
                    if grp.members.contains(&entry.name) && !groups.contains(&grp.gid) {
                        groups.push(grp.gid);
                    }
                }
                Identity {
                    uid: entry.uid,
                    gid,
                    groups,
                    user: entry.name,
                    home: if entry.home.is_empty() {
                        "/".into()
                    } else {
                        entry.home
                    },
                }
            }
            Err(uid) => Identity {
                uid,
                gid,
                groups: vec![gid],
                user: uid.to_string(),
                home: "/".into(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash
# a comment
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
app:x:1000:1000::/home/app:/bin/sh
broken line
bad:x:notanumber:1::/:/bin/sh
";
    const GROUP: &str = "root:x:0:
www-data:x:33:
app:x:1000:
docker:x:999:app,other
audio:x:29:other
";

    fn db() -> UserDb {
        UserDb::parse(PASSWD, GROUP)
    }

    #[test]
    fn named_user_and_group() {
        let id = db().resolve("www-data:www-data").unwrap();
        assert_eq!((id.uid, id.gid, id.groups), (33, 33, vec![33]));
        assert_eq!(
            (id.user.as_str(), id.home.as_str()),
            ("www-data", "/var/www")
        );
    }

    #[test]
    fn user_only_means_group_root_plus_groups_listing_the_user() {
        let id = db().resolve("app").unwrap();
        assert_eq!((id.uid, id.gid), (1000, 0));
        assert_eq!(id.groups, vec![0, 999]);
    }

    #[test]
    fn numeric_ids_need_no_entry() {
        let id = db().resolve("4321:4322").unwrap();
        assert_eq!((id.uid, id.gid, id.groups), (4321, 4322, vec![4322]));
        assert_eq!((id.user.as_str(), id.home.as_str()), ("4321", "/"));
        // A numeric uid with an entry gets its name, home and groups.
        let id = db().resolve("1000:1000").unwrap();
        assert_eq!((id.user.as_str(), id.groups), ("app", vec![1000, 999]));
        let id = db().resolve("app:999").unwrap();
        assert_eq!(id.groups, vec![999]);
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(
            db().resolve("nobody-here")
                .unwrap_err()
                .contains("user \"nobody-here\" does not exist")
        );
        assert!(
            db().resolve("app:nogroup")
                .unwrap_err()
                .contains("group \"nogroup\" does not exist")
        );
        for bad in ["", ":", "app:", ":app", "a:b:c"] {
            assert!(
                db().resolve(bad)
                    .unwrap_err()
                    .contains("is not a valid run-as"),
                "{bad}"
            );
        }
    }

    #[test]
    fn missing_files_are_empty_databases() {
        let db = UserDb::load(Path::new("/nonexistent-etc")).unwrap();
        assert!(db.resolve("root").is_err());
        assert_eq!(db.resolve("0:0").unwrap().user, "0");
    }
}
