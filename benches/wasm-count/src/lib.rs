//! Exports for timing the tokenizer inside wasm: `tg_alloc(len) -> ptr`, then write the text
//! there and call `tg_count(tokenizer, ptr, len)` or `tg_count_until(tokenizer, ptr, len, limit)`
//! (the count, or u64::MAX when over the limit). A tokenizer is its index in the build's list:
//! 0 = cl100k_base, 1 = o200k_base, then the model files of `TOKENGATE_TOKENIZERS`;
//! `tg_find(ptr, len)` gives the index of a name written at `ptr` (u32::MAX: not in the build).
//! `tg_memory_pages()` reports the size of linear memory.

use tokengate::tokenize::{Count, Encoding, Tokenizer};

fn tokenizer(index: u32) -> &'static Tokenizer {
    Tokenizer::all().nth(index as usize).unwrap_or_else(|| Tokenizer::of(Encoding::Cl100kBase))
}

#[no_mangle]
pub extern "C" fn tg_find(ptr: *const u8, len: usize) -> u32 {
    let name = text(ptr, len);
    Tokenizer::all().position(|t| t.name() == name).map_or(u32::MAX, |i| i as u32)
}

fn text<'a>(ptr: *const u8, len: usize) -> &'a str {
    // SAFETY: the host wrote `len` bytes at `ptr`, a buffer it got from `tg_alloc`.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, len) };
    core::str::from_utf8(bytes).unwrap_or("")
}

#[no_mangle]
pub extern "C" fn tg_alloc(len: usize) -> *mut u8 {
    let mut v = Vec::<u8>::with_capacity(len);
    let p = v.as_mut_ptr();
    core::mem::forget(v);
    p
}

#[no_mangle]
pub extern "C" fn tg_count(encoding: u32, ptr: *const u8, len: usize) -> u64 {
    tokenizer(encoding).count(text(ptr, len))
}

#[no_mangle]
pub extern "C" fn tg_count_until(encoding: u32, ptr: *const u8, len: usize, limit: u64) -> u64 {
    match tokenizer(encoding).count_until(text(ptr, len), limit) {
        Count::Within(n) => n,
        Count::Over { .. } => u64::MAX,
    }
}

#[no_mangle]
pub extern "C" fn tg_memory_pages() -> usize {
    core::arch::wasm32::memory_size(0)
}
