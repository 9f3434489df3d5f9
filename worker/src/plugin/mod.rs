//! Native plugins: shared libraries from the plugin directory, loaded once per worker
//! process, after the handshake and before the sandbox (`dlopen` needs `open` and
//! `mmap`, which seccomp forbids later). Scripts reach them through
//! [`crate::engine::plugins`]. The C ABI is documented in `docs/plugins.md`.
//!
//! - [`dir`]: which files are candidates, and the ownership/mode checks.
//! - [`ffi`]: the only `unsafe` code: `dlopen`, symbols, calls.
//! - this module: the registry, what each plugin declares, and the log lines.
//!
//! A plugin that fails to load is skipped: one `ERROR` line on stderr (which the
//! supervisor forwards to its log) and an entry that makes `require(name)` throw
//! `plugin NAME failed to load: REASON`.
//!
//! Must not: load anything after the sandbox is applied, or unload a library.

mod dir;
mod ffi;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::Path;

use anyhow::{Context as _, anyhow, bail, ensure};

pub(crate) use ffi::{Done, Reply};

/// How a method is called from JavaScript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Returns its result; blocks the worker's thread while it runs.
    Sync,
    /// Returns a Promise; the plugin completes it later, from any thread.
    Async,
}

pub(crate) struct Method {
    pub(crate) name: String,
    pub(crate) cname: CString,
    pub(crate) kind: Kind,
}

/// A plugin that loaded.
pub(crate) struct Plugin {
    pub(crate) name: String,
    pub(crate) methods: Vec<Method>,
    lib: ffi::Lib,
    /// Held for each call into the plugin: runs have threads of their own, and ABI v1
    /// promises a plugin one call at a time (its completions may come from anywhere).
    calls: std::sync::Mutex<()>,
}

impl Plugin {
    fn one_at_a_time(&self) -> std::sync::MutexGuard<'_, ()> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn call(&self, method: &Method, input: &[u8]) -> Reply {
        let _turn = self.one_at_a_time();
        self.lib.call(&method.cname, input)
    }

    pub(crate) fn call_async(&self, method: &Method, input: &[u8], done: Done) {
        let _turn = self.one_at_a_time();
        self.lib.call_async(&method.cname, input, done);
    }
}

/// A plugin that did not load, under every name a script might require it by.
struct Failed {
    names: Vec<String>,
    reason: String,
}

/// What `require(name)` finds.
pub(crate) enum Lookup<'a> {
    /// Its index, for [`Plugins::get`].
    Loaded(usize),
    Failed(&'a str),
    Missing,
}

/// The plugins of one worker process.
#[derive(Default)]
pub(crate) struct Plugins {
    loaded: Vec<Plugin>,
    failed: Vec<Failed>,
}

/// Names the engine keeps for itself.
const RESERVED: &[&str] = &["http"];

fn valid_plugin_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
}

fn valid_method_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | 'A'..='Z' | '_' | '$'))
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && name != "__proto__"
}

/// Parses `traitor_plugin_methods()`: `{"add": "sync", "delay": "async"}`.
fn parse_methods(json: &str) -> anyhow::Result<Vec<Method>> {
    let map: BTreeMap<String, String> = serde_json::from_str(json).context(
        "traitor_plugin_methods is not a JSON object of method name to \"sync\"/\"async\"",
    )?;
    map.into_iter()
        .map(|(name, kind)| {
            ensure!(valid_method_name(&name), "invalid method name {name:?}");
            let kind = match kind.as_str() {
                "sync" => Kind::Sync,
                "async" => Kind::Async,
                other => bail!("method {name}: kind {other:?} is neither \"sync\" nor \"async\""),
            };
            let cname = CString::new(name.clone()).map_err(|_| anyhow!("NUL in {name:?}"))?;
            Ok(Method { name, cname, kind })
        })
        .collect()
}

impl Plugins {
    /// Loads every plugin of `dir`, logging one line per plugin to stderr.
    pub(crate) fn load_dir(dir: &Path) -> Plugins {
        let mut plugins = Plugins::default();
        let euid = ffi::euid();
        let candidates = match dir::scan(dir, euid) {
            Ok(c) => c,
            Err(refused) => {
                eprintln!("traitor-worker: ERROR no plugin loaded: {}", refused.reason);
                plugins
                    .failed
                    .extend(refused.stems.into_iter().map(|s| Failed {
                        names: vec![s],
                        reason: refused.reason.clone(),
                    }));
                return plugins;
            }
        };
        for c in candidates {
            match plugins.load_one(&c.path, euid) {
                Ok(name) => {
                    eprintln!(
                        "traitor-worker: loaded plugin {name} from {}",
                        c.path.display()
                    );
                }
                Err((name, e)) => {
                    let reason = format!("{e:#}");
                    eprintln!(
                        "traitor-worker: ERROR plugin {} ({}) failed to load: {reason}",
                        name.as_deref().unwrap_or(&c.stem),
                        c.path.display()
                    );
                    let mut names = vec![c.stem];
                    names.extend(name);
                    plugins.failed.push(Failed { names, reason });
                }
            }
        }
        plugins
    }

    /// Loads one library; on failure, the name it declared (if it got that far).
    fn load_one(
        &mut self,
        path: &Path,
        euid: u32,
    ) -> Result<String, (Option<String>, anyhow::Error)> {
        dir::check_file(path, euid).map_err(|e| (None, anyhow!(e)))?;
        let lib = ffi::open(path).map_err(|e| (None, e))?;
        let name = lib.name().map_err(|e| (None, e))?;
        let fail = |e: anyhow::Error| (Some(name.clone()), e);
        if !valid_plugin_name(&name) {
            return Err(fail(anyhow!(
                "invalid plugin name {name:?} (lower-case letters, digits, '_' and '-', \
                 starting with a letter)"
            )));
        }
        if RESERVED.contains(&name.as_str()) {
            return Err(fail(anyhow!("the name {name:?} is a built-in module")));
        }
        if self.loaded.iter().any(|p| p.name == name) {
            return Err(fail(anyhow!(
                "another plugin named {name:?} is already loaded"
            )));
        }
        let methods = lib
            .methods()
            .and_then(|m| parse_methods(&m))
            .map_err(fail)?;
        let any = |k: Kind| methods.iter().any(|m| m.kind == k);
        if any(Kind::Sync) && !lib.has_call() {
            return Err(fail(anyhow!(
                "it declares sync methods but lacks traitor_plugin_call or traitor_plugin_free"
            )));
        }
        if any(Kind::Async) && !lib.has_call_async() {
            return Err(fail(anyhow!(
                "it declares async methods but lacks traitor_plugin_call_async"
            )));
        }
        lib.init().map_err(fail)?;
        self.loaded.push(Plugin {
            name: name.clone(),
            methods,
            lib,
            calls: std::sync::Mutex::new(()),
        });
        Ok(name)
    }

    pub(crate) fn lookup(&self, name: &str) -> Lookup<'_> {
        if let Some(i) = self.loaded.iter().position(|p| p.name == name) {
            return Lookup::Loaded(i);
        }
        match self
            .failed
            .iter()
            .find(|f| f.names.iter().any(|n| n == name))
        {
            Some(f) => Lookup::Failed(&f.reason),
            None => Lookup::Missing,
        }
    }

    pub(crate) fn get(&self, index: usize) -> Option<&Plugin> {
        self.loaded.get(index)
    }

    /// Names of the loaded plugins, in load order.
    pub(crate) fn loaded_names(&self) -> impl Iterator<Item = &str> {
        self.loaded.iter().map(|p| p.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_plugin_name("example"));
        assert!(valid_plugin_name("my-plugin_2"));
        assert!(!valid_plugin_name("Example"));
        assert!(!valid_plugin_name("2fa"));
        assert!(!valid_plugin_name("../x"));
        assert!(!valid_plugin_name(""));
        assert!(valid_method_name("sha256"));
        assert!(valid_method_name("$x_Y"));
        assert!(!valid_method_name("__proto__"));
        assert!(!valid_method_name("a-b"));
    }

    #[test]
    fn method_tables_are_parsed() {
        let m = parse_methods(r#"{"add":"sync","delay":"async"}"#).unwrap();
        let got: Vec<(&str, Kind)> = m.iter().map(|m| (m.name.as_str(), m.kind)).collect();
        assert_eq!(got, [("add", Kind::Sync), ("delay", Kind::Async)]);
        assert!(parse_methods(r#"{"add":"later"}"#).is_err());
        assert!(parse_methods(r#"["add"]"#).is_err());
        assert!(parse_methods(r#"{"__proto__":"sync"}"#).is_err());
    }
}
