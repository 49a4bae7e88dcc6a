//! The engine inside wasm: loads `tokengate_count.wasm` (benches/wasm-count, the same tokenizer
//! code and tables as tokengate.wasm, exporting a count function) into wasmtime.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use wasmtime::{Engine, Instance, Linker, Memory, Module, Store, TypedFunc};

pub const BUILD_COUNT_WASM: &str =
    "cargo build --release --target wasm32-wasip1 --manifest-path benches/wasm-count/Cargo.toml --target-dir target";

pub fn count_wasm_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip1/release/tokengate_count.wasm")
}

pub struct WasmCounter {
    store: Store<()>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    count: TypedFunc<(u32, u32, u32), u64>,
    count_until: TypedFunc<(u32, u32, u32, u64), u64>,
    pages: TypedFunc<(), u32>,
    /// `tg_find` (builds before it had only the two built-in encodings).
    find: Option<TypedFunc<(u32, u32), u32>>,
    /// One guest buffer, reused for every text (grown when a text does not fit).
    buf: (u32, u32),
}

impl WasmCounter {
    pub fn load() -> Result<WasmCounter> {
        WasmCounter::load_from(&count_wasm_path())
    }

    /// Loads another build of the counting module (an older commit's, to compare).
    pub fn load_from(path: &Path) -> Result<WasmCounter> {
        let engine = Engine::default();
        let module = Module::from_file(&engine, path)
            .map_err(|e| anyhow!("{}: {e}; build it with `{BUILD_COUNT_WASM}`", path.display()))?;
        let mut linker = Linker::new(&engine);
        linker.define_unknown_imports_as_traps(&module)?;
        let mut store = Store::new(&engine, ());
        let instance: Instance = linker.instantiate(&mut store, &module)?;
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call(&mut store, ())?;
        }
        let memory = instance.get_memory(&mut store, "memory").ok_or_else(|| anyhow!("no memory export"))?;
        Ok(WasmCounter {
            alloc: instance.get_typed_func(&mut store, "tg_alloc")?,
            count: instance.get_typed_func(&mut store, "tg_count")?,
            count_until: instance.get_typed_func(&mut store, "tg_count_until")?,
            pages: instance.get_typed_func(&mut store, "tg_memory_pages")?,
            find: instance.get_typed_func(&mut store, "tg_find").ok(),
            store,
            memory,
            buf: (0, 0),
        })
    }

    /// Copies `text` into the guest buffer; returns (ptr, len) for the count calls (valid until
    /// the next `put`).
    pub fn put(&mut self, text: &str) -> Result<(u32, u32)> {
        if (text.len() as u32) > self.buf.1 {
            let cap = (text.len() as u32).max(1 << 20) + 4096;
            self.buf = (self.alloc.call(&mut self.store, cap)?, cap);
        }
        self.memory.write(&mut self.store, self.buf.0 as usize, text.as_bytes())?;
        Ok((self.buf.0, text.len() as u32))
    }

    /// The index the count calls take for the tokenizer `name`: 0 = cl100k_base, 1 = o200k_base,
    /// then the model files the module was built with.
    pub fn find(&mut self, name: &str) -> Result<u32> {
        match name {
            "cl100k_base" => return Ok(0),
            "o200k_base" => return Ok(1),
            _ => {}
        }
        let find = self.find.clone().ok_or_else(|| anyhow!("this build of the counting module has only cl100k_base and o200k_base"))?;
        let at = self.put(name)?;
        match find.call(&mut self.store, at)? {
            u32::MAX => Err(anyhow!("the counting module has no tokenizer {name:?} (build it with TOKENGATE_TOKENIZERS)")),
            i => Ok(i),
        }
    }

    /// `encoding`: 0 = cl100k_base, 1 = o200k_base, then the model files' tokenizers.
    pub fn count(&mut self, encoding: u32, (ptr, len): (u32, u32)) -> u64 {
        self.count.call(&mut self.store, (encoding, ptr, len)).unwrap_or(u64::MAX)
    }

    /// The count, or u64::MAX when over `limit`.
    pub fn count_until(&mut self, encoding: u32, (ptr, len): (u32, u32), limit: u64) -> u64 {
        self.count_until.call(&mut self.store, (encoding, ptr, len, limit)).unwrap_or(u64::MAX)
    }

    pub fn memory_bytes(&mut self) -> u64 {
        self.pages.call(&mut self.store, ()).map(|p| p as u64 * 65536).unwrap_or(0)
    }
}
