//! API keys: taken from the configured header and known only by their key id, never by value.

use sha2::{Digest, Sha256};

/// The key in a header value: a `Bearer ` prefix (any case) and surrounding spaces removed.
/// `None` when nothing is left.
pub fn key_from_header(value: &str) -> Option<&str> {
    let value = value.trim();
    let key = match (value.get(..6), value.get(6..)) {
        (Some(scheme), Some(rest))
            if scheme.eq_ignore_ascii_case("bearer") && (rest.is_empty() || rest.starts_with([' ', '\t'])) =>
        {
            rest.trim_start()
        }
        _ => value,
    };
    (!key.is_empty()).then_some(key)
}

/// The key id: the first 16 hex characters of SHA-256 of the key. Safe to log, export and use
/// in configuration; the key itself never leaves this function.
pub fn key_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut id = String::with_capacity(16);
    for byte in digest.iter().take(8) {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_bearer_in_any_case() {
        assert_eq!(key_from_header("Bearer sk-abc"), Some("sk-abc"));
        assert_eq!(key_from_header("bearer   sk-abc "), Some("sk-abc"));
        assert_eq!(key_from_header("sk-abc"), Some("sk-abc"));
        assert_eq!(key_from_header("Bearer "), None);
        assert_eq!(key_from_header("   "), None);
        assert_eq!(key_from_header("Bearé"), Some("Bearé"));
        assert_eq!(key_from_header("Bearerless"), Some("Bearerless"));
        assert_eq!(key_from_header("BEARER\tk"), Some("k"));
    }

    #[test]
    fn key_id_is_sha256_prefix() {
        // printf %s sk-test | sha256sum
        assert_eq!(key_id("sk-test"), "f3abf2a6cc4f0098");
        assert_eq!(key_id("sk-test").len(), 16);
    }
}
