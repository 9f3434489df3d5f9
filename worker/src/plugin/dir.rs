//! Finding plugin files, and refusing a directory or file that someone other than this
//! user (or root) could have changed.
//!
//! The rule (as ssh's `StrictModes`): the directory and each library must be owned by
//! this process's user or by root, and writable by their owner only (no group or
//! world write bit). With the directory safe, nobody else can swap a file between the
//! check and `dlopen`.
//!
//! Must not: open or read any library; that is [`super::ffi`]'s job, after these checks.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// One `*.so` in the plugin directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// The file name without `lib` and `.so`: the name failures are reported under.
    pub(crate) stem: String,
    pub(crate) path: PathBuf,
}

/// Why nothing from a directory is loaded: the reason, and the stems of the files
/// that were there (so that scripts requiring them learn why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) stems: Vec<String>,
    pub(crate) reason: String,
}

/// `libexample.so` and `example.so` → `example`; other names → `None`.
pub(crate) fn stem(file_name: &str) -> Option<String> {
    if file_name.starts_with('.') {
        return None;
    }
    let base = file_name.strip_suffix(".so")?;
    let base = base.strip_prefix("lib").unwrap_or(base);
    (!base.is_empty()).then(|| base.to_string())
}

/// Whether a file or directory with this owner and mode is safe to trust.
pub(crate) fn check_owner_mode(
    what: &str,
    path: &Path,
    uid: u32,
    mode: u32,
    euid: u32,
) -> Result<(), String> {
    if uid != euid && uid != 0 {
        return Err(format!(
            "{what} {} is owned by uid {uid}, not by this user (uid {euid}) or root",
            path.display()
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "{what} {} is writable by {} (mode {:04o}); only its owner may write it",
            path.display(),
            if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            mode & 0o7777
        ));
    }
    Ok(())
}

/// The plugin files of `dir`, sorted by file name. A missing directory has none.
pub(crate) fn scan(dir: &Path, euid: u32) -> Result<Vec<Candidate>, Refused> {
    let refuse = |stems: Vec<String>, reason: String| Refused { stems, reason };
    if !dir.is_absolute() {
        return Err(refuse(
            Vec::new(),
            format!(
                "the plugin directory {} is not an absolute path",
                dir.display()
            ),
        ));
    }
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(refuse(
                Vec::new(),
                format!("cannot read the plugin directory {}: {e}", dir.display()),
            ));
        }
    };
    if !meta.is_dir() {
        return Err(refuse(
            Vec::new(),
            format!("the plugin directory {} is not a directory", dir.display()),
        ));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        refuse(
            Vec::new(),
            format!("cannot list the plugin directory {}: {e}", dir.display()),
        )
    })?;
    let mut found: Vec<Candidate> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some(Candidate {
                stem: stem(&name)?,
                path: e.path(),
            })
        })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    if let Err(reason) =
        check_owner_mode("the plugin directory", dir, meta.uid(), meta.mode(), euid)
    {
        return Err(refuse(found.into_iter().map(|c| c.stem).collect(), reason));
    }
    Ok(found)
}

/// Checks one library file (following symlinks: the target is what gets loaded).
pub(crate) fn check_file(path: &Path, euid: u32) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot stat it: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    check_owner_mode("the library", path, meta.uid(), meta.mode(), euid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn stems_drop_lib_and_so() {
        assert_eq!(stem("libexample.so").as_deref(), Some("example"));
        assert_eq!(stem("example.so").as_deref(), Some("example"));
        assert_eq!(stem("lib.so"), None);
        assert_eq!(stem(".hidden.so"), None);
        assert_eq!(stem("README.md"), None);
        assert_eq!(stem("libx.so.1"), None);
    }

    #[test]
    fn owners_and_modes_are_checked() {
        let p = Path::new("/p");
        assert!(check_owner_mode("d", p, 1000, 0o40755, 1000).is_ok());
        assert!(check_owner_mode("d", p, 0, 0o40755, 1000).is_ok());
        let e = check_owner_mode("d", p, 1001, 0o40755, 1000).unwrap_err();
        assert_eq!(
            e,
            "d /p is owned by uid 1001, not by this user (uid 1000) or root"
        );
        let e = check_owner_mode("d", p, 1000, 0o40777, 1000).unwrap_err();
        assert_eq!(
            e,
            "d /p is writable by everyone (mode 0777); only its owner may write it"
        );
        let e = check_owner_mode("d", p, 1000, 0o100664, 1000).unwrap_err();
        assert!(e.contains("writable by its group (mode 0664)"), "{e}");
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "traitor-plugin-dir-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_missing_directory_has_no_plugins_and_a_world_writable_one_is_refused() {
        let d = tempdir();
        assert_eq!(scan(&d.join("nope"), 0), Ok(Vec::new()));
        assert!(scan(Path::new("relative/dir"), 0).is_err());
        std::fs::write(d.join("libb.so"), b"").unwrap();
        std::fs::write(d.join("a.so"), b"").unwrap();
        std::fs::write(d.join("notes.txt"), b"").unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let euid = super::super::ffi::euid();
        let found = scan(&d, euid).unwrap();
        let stems: Vec<&str> = found.iter().map(|c| c.stem.as_str()).collect();
        assert_eq!(stems, ["a", "b"]);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = scan(&d, euid).unwrap_err();
        assert_eq!(refused.stems, ["a", "b"]);
        assert!(
            refused.reason.contains("writable by everyone"),
            "{refused:?}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
