//! Counts one bench input once with the engine in wasm (tokengate_count.wasm in wasmtime), for
//! `benches/instructions.sh`, which runs it under callgrind with collection on only inside
//! [`count_once`]: the count's instructions, without the compile or the input's generation.
//! `instructions [--wasm PATH] INPUT TOKENIZER` (INPUT: one of [`INPUTS`]; TOKENIZER:
//! cl100k_base, o200k_base or a model file's name in a build with `TOKENGATE_TOKENIZERS`);
//! prints the token count.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

#[allow(dead_code)] // the early-exit and memory calls are for the table bench
#[path = "../benches/support/wasm_counter.rs"]
mod wasm_counter;

use wasm_counter::WasmCounter;

/// The inputs the script measures, by the names it passes.
const INPUTS: [&str; 6] = ["prose-4k", "code-64k", "mixed-1m", "letters-1m", "scripts-1m", "cjk-64k"];

fn input(name: &str) -> Option<String> {
    Some(match name {
        "prose-4k" => tokengate_benches::prose(4 << 10),
        "code-64k" => tokengate_benches::code(64 << 10),
        "cjk-64k" => tokengate_benches::cjk(64 << 10),
        "mixed-1m" => tokengate_benches::mixed(1 << 20),
        "letters-1m" => tokengate_benches::random_letters(1 << 20),
        "scripts-1m" => tokengate_benches::mixed_scripts(1 << 20),
        _ => return None,
    })
}

/// The measured call: the toggle of callgrind names this function, so it must stay a call.
#[inline(never)]
fn count_once(w: &mut WasmCounter, encoding: u32, at: (u32, u32)) -> u64 {
    w.count(encoding, at)
}

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let wasm = match args.iter().position(|a| a == "--wasm") {
        Some(k) if k + 1 < args.len() => Some(PathBuf::from(args.drain(k..k + 2).nth(1).unwrap_or_default())),
        Some(_) => bail!("--wasm needs a path"),
        None => None,
    };
    let [name, tokenizer] = args.as_slice() else {
        bail!("usage: instructions [--wasm PATH] INPUT TOKENIZER (INPUT: {})", INPUTS.join(", "));
    };
    let text = input(name).with_context(|| format!("unknown input {name:?}: one of {}", INPUTS.join(", ")))?;
    let mut w = match &wasm {
        Some(path) => WasmCounter::load_from(path)?,
        None => WasmCounter::load()?,
    };
    let encoding = w.find(tokenizer)?;
    let at = w.put(&text)?;
    let n = count_once(&mut w, encoding, at);
    if n == u64::MAX {
        bail!("the count trapped");
    }
    println!("{n}");
    Ok(())
}
