//! The split patterns the pre-tokenizers implement, verbatim as model files write them, and the
//! SHA-256 of the tiktoken rank files whose pattern is known. Shared by the build (which accepts
//! a model file only when its pattern is one of these, byte for byte) and the tests (which check
//! each pre-tokenizer against its pattern under a regex engine).

/// cl100k_base, and Llama 3's `tokenizer.json`, in the form Hugging Face files write it.
pub const CL100K: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// o200k_base, and gpt-oss's `tokenizer.json`.
pub const O200K: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// SHA-256 of OpenAI's `cl100k_base.tiktoken` (as tiktoken-rs ships it).
pub const CL100K_TIKTOKEN_SHA256: &str = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7";

/// SHA-256 of OpenAI's `o200k_base.tiktoken`.
pub const O200K_TIKTOKEN_SHA256: &str = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d";
