//! Writing and removing files on a real file system (a temp dir), without the supervisor.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use crate::identity::Identity;

#[path = "../../tests/harness/prerequisite.rs"]
mod prerequisite;

/// The list of written files is process-wide: tests that write or remove take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Dir(PathBuf);

impl Dir {
    fn new(label: &str) -> Dir {
        let path = std::env::temp_dir().join(format!(
            "simplevisor-files-{label}-{}-{:x}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir(&path).unwrap();
        Dir(path)
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spec(path: &Path, template: &str, mode: u32) -> FileSpec {
    FileSpec {
        path: path.to_path_buf(),
        template: template.into(),
        mode,
        owner: None,
        env: None,
    }
}

fn values() -> BTreeMap<String, String> {
    BTreeMap::from([("SECRET".to_string(), "s3cret-value".to_string())])
}

#[test]
fn files_are_rendered_with_their_exact_mode_and_replace_what_was_there() {
    let _serial = serial();
    let dir = Dir::new("write");
    let a = dir.0.join("a.txt");
    let b = dir.0.join("b.txt");
    std::fs::write(&a, "old").unwrap();
    // 0666 is wider than any usual umask lets open(2) create.
    let files = [
        spec(&a, "password={{ .SECRET }}\n", 0o666),
        spec(&b, "{{ .SECRET }}", 0o400),
    ];
    write_all(&files, &values()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&a).unwrap(),
        "password=s3cret-value\n"
    );
    assert_eq!(std::fs::read_to_string(&b).unwrap(), "s3cret-value");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!((mode(&a), mode(&b)), (0o666, 0o400));
    let meta = std::fs::metadata(&a).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (Uid::effective().as_raw(), Gid::effective().as_raw()),
        "without owner: simplevisor's own user and group"
    );
    assert_eq!(dir.names(), ["a.txt", "b.txt"], "no temporary file is left");
    let listed: Vec<PathBuf> = status().into_iter().map(|(p, _)| p).collect();
    assert!(listed.contains(&a) && listed.contains(&b), "{listed:?}");
    let removal = remove_all();
    assert_eq!((removal.removed, removal.failures.len()), (2, 0));
    assert!(dir.names().is_empty());
    assert!(status().is_empty());
}

#[test]
fn the_owner_is_set_before_the_file_appears() {
    if !prerequisite::require(
        "root (to give a file to another user)",
        Uid::effective().is_root(),
    ) {
        return;
    }
    let _serial = serial();
    let dir = Dir::new("owner");
    let path = dir.0.join("key.pem");
    let mut file = spec(&path, "{{ .SECRET }}", 0o440);
    file.owner = Some(Identity {
        uid: 65534,
        gid: 65533,
        groups: vec![65533],
        user: "nobody".into(),
        home: "/".into(),
    });
    write_all(&[file], &values()).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (65534, 65533, 0o440)
    );
    remove_all();
}

#[test]
fn a_symlink_at_the_path_is_replaced_not_followed() {
    let _serial = serial();
    let dir = Dir::new("link");
    let target = dir.0.join("target");
    std::fs::write(&target, "untouched").unwrap();
    let link = dir.0.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    write_all(&[spec(&link, "new", 0o400)], &values()).unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
    assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
    remove_all();
}

#[test]
fn when_one_file_cannot_be_written_none_is_replaced_and_no_temporary_is_left() {
    let _serial = serial();
    let dir = Dir::new("fail");
    let a = dir.0.join("a");
    std::fs::write(&a, "old").unwrap();
    let missing = dir.0.join("no-such-dir").join("b");
    let error = prepare(
        &[
            spec(&a, "{{ .SECRET }}", 0o400),
            spec(&missing, "{{ .SECRET }}", 0o400),
        ],
        &values(),
    )
    .err()
    .unwrap();
    assert_eq!(
        error,
        format!(
            "cannot write {}: its directory {} does not exist",
            missing.display(),
            dir.0.join("no-such-dir").display()
        )
    );
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "old");
    assert_eq!(dir.names(), ["a"]);
    assert!(status().is_empty());

    std::fs::create_dir(dir.0.join("d")).unwrap();
    let error = write_all(&[spec(&dir.0.join("d"), "x", 0o400)], &values()).unwrap_err();
    assert!(error.ends_with("a directory is in its place"), "{error}");
}

#[test]
fn a_prepared_write_replaces_nothing_until_committed() {
    let _serial = serial();
    let dir = Dir::new("prepared");
    let a = dir.0.join("a");
    std::fs::write(&a, "old").unwrap();
    let prepared = prepare(&[spec(&a, "new", 0o400)], &values()).unwrap();
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "old");
    assert_eq!(dir.names().len(), 2, "the new file waits beside it");
    drop(prepared);
    assert_eq!(dir.names(), ["a"], "dropped: the new file is removed");
    let prepared = prepare(&[spec(&a, "new", 0o400)], &values()).unwrap();
    prepared.commit().unwrap();
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "new");
    remove_all();
}

#[test]
fn a_file_replaced_by_someone_else_is_not_removed() {
    let _serial = serial();
    let dir = Dir::new("replaced");
    let a = dir.0.join("a");
    write_all(&[spec(&a, "ours", 0o400)], &values()).unwrap();
    // Moved aside, not deleted: a freed inode could be reused for theirs.
    std::fs::rename(&a, dir.0.join("aside")).unwrap();
    std::fs::write(&a, "theirs").unwrap();
    let removal = remove_all();
    assert_eq!((removal.removed, removal.failures.len()), (0, 0));
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "theirs");
}

#[test]
fn errors_never_show_content() {
    let _serial = serial();
    let dir = Dir::new("render");
    let error = write_all(
        &[spec(
            &dir.0.join("a"),
            "{{ .SECRET | printf \"%d\" }}{{ .NOPE }}",
            0o400,
        )],
        &values(),
    )
    .unwrap_err();
    assert!(!error.contains("s3cret"), "{error}");
    assert!(
        error.contains(&dir.0.join("a").display().to_string()),
        "{error}"
    );
    assert!(dir.names().is_empty());
}
