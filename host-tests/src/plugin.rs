//! The plugin as compiled code: one wasmtime `Engine`, the `Module` and a pre-linked instance
//! template. `Plugin::load`/`Plugin::tokengate` compile a file once per process (compiled code is
//! immutable, so every test and VM shares it; host state never is).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use wasmtime::{Config, Engine, InstancePre, Linker, Module, OptLevel, Store};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::host_calls::ImportNames;
use crate::hostcalls;
use crate::state::{HostState, Shared};

/// The command that builds the real filter.
pub const BUILD_COMMAND: &str = "cargo build --release --target wasm32-wasip1 -p tokengate";

/// A compiled, linked plugin, ready to instantiate into VMs. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    name: String,
    module: Module,
    pre: InstancePre<HostState>,
    /// The name of each host-call counter, in the linker's order.
    import_names: ImportNames,
    compile_time: Duration,
}

/// Compiled code is immutable, so one engine per process serves every test.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.cranelift_opt_level(OptLevel::Speed);
        config.parallel_compilation(true);
        Engine::new(&config)
            .unwrap_or_else(|e| unreachable!("the default wasmtime config is valid: {e}"))
    })
}

impl Plugin {
    /// Where the real filter is built: `$TOKENGATE_WASM`, else the workspace's
    /// `target/wasm32-wasip1/release/tokengate.wasm` (honouring `$CARGO_TARGET_DIR`).
    pub fn tokengate_path() -> PathBuf {
        if let Some(path) = std::env::var_os("TOKENGATE_WASM") {
            return PathBuf::from(path);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        target.join("wasm32-wasip1/release/tokengate.wasm")
    }

    /// The real tokengate.wasm, compiled once per process.
    pub fn tokengate() -> Result<Plugin> {
        let path = Plugin::tokengate_path();
        if !path.exists() {
            return Err(Error::WasmMissing {
                path,
                build: BUILD_COMMAND,
            });
        }
        warn_if_stale(&path);
        Plugin::load(&path)
    }

    /// A module from a file, compiled once per process (per path, size and modification time).
    pub fn load(path: &Path) -> Result<Plugin> {
        /// A file is the same file while its path, size and modification time are.
        type FileKey = (PathBuf, u64, Option<SystemTime>);
        static LOADED: OnceLock<Mutex<HashMap<FileKey, Plugin>>> = OnceLock::new();
        let meta = std::fs::metadata(path).map_err(|_| Error::WasmMissing {
            path: path.to_path_buf(),
            build: BUILD_COMMAND,
        })?;
        let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
        // Holding the lock while compiling makes parallel tests wait for one compilation.
        let mut loaded = LOADED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(plugin) = loaded.get(&key) {
            return Ok(plugin.clone());
        }
        let bytes =
            std::fs::read(path).map_err(|e| Error::Load(format!("{}: {e}", path.display())))?;
        let name = path.file_name().map_or_else(
            || "module".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let plugin = Plugin::compile(&name, &bytes)?;
        loaded.insert(key, plugin.clone());
        Ok(plugin)
    }

    /// A module from bytes (binary or WAT text), compiled now, not cached.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Plugin> {
        Plugin::compile(name, bytes)
    }

    /// A module from WAT text.
    pub fn from_wat(wat: &str) -> Result<Plugin> {
        Plugin::compile("wat", wat.as_bytes())
    }

    fn compile(name: &str, bytes: &[u8]) -> Result<Plugin> {
        let engine = engine();
        let started = Instant::now();
        let module = Module::new(engine, bytes).map_err(|e| Error::Load(format!("{e:#}")))?;
        let compile_time = started.elapsed();
        let (pre, import_names) = link(name, &module)?;
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                name: name.to_string(),
                module,
                pre,
                import_names,
                compile_time,
            }),
        })
    }

    /// The module's name (file name for files).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How long cranelift took to compile the module.
    pub fn compile_time(&self) -> Duration {
        self.inner.compile_time
    }

    /// Every import of the module as (module, name).
    pub fn imports(&self) -> Vec<(String, String)> {
        self.inner
            .module
            .imports()
            .map(|i| (i.module().to_string(), i.name().to_string()))
            .collect()
    }

    /// Every export name of the module.
    pub fn exports(&self) -> Vec<String> {
        self.inner
            .module
            .exports()
            .map(|e| e.name().to_string())
            .collect()
    }

    pub(crate) fn engine(&self) -> &Engine {
        self.inner.module.engine()
    }

    pub(crate) fn instance_pre(&self) -> &InstancePre<HostState> {
        &self.inner.pre
    }

    pub(crate) fn import_names(&self) -> &ImportNames {
        &self.inner.import_names
    }
}

/// Links every hostcall, after checking that each import is one this host provides; returns the
/// instance template and the names of the host-call counters.
fn link(name: &str, module: &Module) -> Result<(InstancePre<HostState>, ImportNames)> {
    let mut linker = Linker::new(module.engine());
    let import_names =
        hostcalls::add_to_linker(&mut linker).map_err(|e| Error::Load(format!("{e:#}")))?;
    let mut probe = Store::new(
        module.engine(),
        HostState::new(0, Arc::new(Shared::new(Clock::manual(), String::new())), 0),
    );
    let unknown: Vec<String> = module
        .imports()
        .filter(|import| linker.get_by_import(&mut probe, import).is_none())
        .map(|import| format!("{}::{}", import.module(), import.name()))
        .collect();
    if !unknown.is_empty() {
        return Err(Error::Load(format!(
            "{name} imports what this host does not implement: {}",
            unknown.join(", ")
        )));
    }
    let abi = module
        .exports()
        .any(|e| e.name().starts_with("proxy_abi_version_0_2_"));
    if !abi {
        return Err(Error::Load(format!(
            "{name} is not a proxy-wasm 0.2.x module (no proxy_abi_version_0_2_* export)"
        )));
    }
    let pre = linker
        .instantiate_pre(module)
        .map_err(|e| Error::Load(format!("{name}: {e:#}")))?;
    Ok((pre, import_names))
}

/// Warns once per process when a filter source is newer than the .wasm: `cargo test -p host-tests`
/// does not rebuild it, and a stale module makes every behaviour test misleading.
fn warn_if_stale(wasm: &Path) {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let Ok(built) = std::fs::metadata(wasm).and_then(|m| m.modified()) else {
            return;
        };
        let filter = Path::new(env!("CARGO_MANIFEST_DIR")).join("../filter");
        if let Some((_, newer)) = newest_file(&filter).filter(|(modified, _)| *modified > built) {
            eprintln!(
                "warning: {} is newer than {}; rebuild it: {BUILD_COMMAND}",
                newer.display(),
                wasm.display()
            );
        }
    });
}

fn newest_file(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let candidate = if path.is_dir() {
            newest_file(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| (t, path))
        };
        if let Some(candidate) = candidate {
            if newest.as_ref().is_none_or(|(t, _)| candidate.0 > *t) {
                newest = Some(candidate);
            }
        }
    }
    newest
}
