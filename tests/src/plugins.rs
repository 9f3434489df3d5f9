//! Plugin directories for the end-to-end tests: the real example plugin
//! (`plugins/example`, built once per test process) and tiny C libraries compiled on
//! the spot with `cc` to play broken plugins (a wrong ABI version, a missing symbol).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::profile_dir;

/// `libexample.so` of this profile (built if needed).
pub fn example_plugin() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if std::env::var_os("TRAITOR_TEST_NO_BUILD").is_some() {
            return;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "traitor-plugin-example", "--lib"])
            .arg("--manifest-path")
            .arg(&manifest);
        if profile_dir().file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let out = cmd.stdin(Stdio::null()).output().expect("run cargo build");
        assert!(
            out.status.success(),
            "building the example plugin failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    profile_dir().join("libexample.so")
}

/// A fresh plugin directory (mode 0755), removed when dropped.
pub struct PluginDir {
    dir: tempfile::TempDir,
}

impl Default for PluginDir {
    fn default() -> Self {
        Self::new()
    }
}

impl PluginDir {
    pub fn new() -> PluginDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = PluginDir { dir };
        d.chmod(d.path(), 0o755);
        d
    }

    /// A directory holding the example plugin.
    pub fn with_example() -> PluginDir {
        let d = PluginDir::new();
        d.add_example();
        d
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_str(&self) -> &str {
        self.path().to_str().expect("UTF-8 temp path")
    }

    /// Copies the example plugin in as `libexample.so`.
    pub fn add_example(&self) {
        let to = self.path().join("libexample.so");
        std::fs::copy(example_plugin(), &to).expect("copy the example plugin");
        self.chmod(&to, 0o755);
    }

    /// Compiles C `source` into `file` in this directory.
    pub fn add_c(&self, file: &str, source: &str) {
        let src = self.path().join(format!("{file}.c.txt"));
        std::fs::write(&src, source).expect("write C source");
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-x", "c", "-o"])
            .arg(self.path().join(file))
            .arg(&src)
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "cc failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(src).expect("remove C source");
    }

    pub fn chmod(&self, p: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}
