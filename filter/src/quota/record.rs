//! The bytes of one quota slot in shared data: whose key it holds and the state of its buckets.
//!
//! Layout (73 bytes): version `2`, the 16-byte key name, then one little-endian `u64` per bucket
//! (tokens, input tokens, output tokens, each per minute then per day; requests per minute).
//! Anything else (a version-1 slot of an earlier module included) decodes as `None` and is
//! treated as a free slot.

/// Buckets per key.
pub const BUCKETS: usize = 7;
const VERSION: u8 = 2;
const NAME_LEN: usize = 16;
const LEN: usize = 1 + NAME_LEN + 8 * BUCKETS;
/// The name of the shared bucket of requests without a key (not hex, so never a key id).
const ANONYMOUS: &[u8; NAME_LEN] = b"anonymous.......";
/// A slot claimed but holding no key yet.
const EMPTY: &[u8; NAME_LEN] = b"................";

/// Whose buckets a slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyName {
    /// A key id (16 lower-case hex characters).
    Id(String),
    /// Requests without a key, when keys are optional.
    Anonymous,
}

impl KeyName {
    fn bytes(&self) -> [u8; NAME_LEN] {
        match self {
            KeyName::Anonymous => *ANONYMOUS,
            KeyName::Id(id) => {
                let mut out = *EMPTY;
                for (o, b) in out.iter_mut().zip(id.bytes()) {
                    *o = b;
                }
                out
            }
        }
    }

    /// FNV-1a of the name: spreads key ids over the slot table.
    pub fn hash(&self) -> u64 {
        self.bytes().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }
}

/// A decoded slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    name: [u8; NAME_LEN],
    /// Each bucket's theoretical arrival time (see `bucket`), 0 when unused.
    pub tats: [u64; BUCKETS],
}

impl Record {
    /// Full buckets for `key`.
    pub fn fresh(key: &KeyName) -> Record {
        Record { name: key.bytes(), tats: [0; BUCKETS] }
    }

    pub fn is(&self, key: &KeyName) -> bool {
        self.name == key.bytes()
    }

    /// How long until every bucket is full again: 0 for an idle slot, and the eviction order
    /// (lower goes first).
    pub fn busy_for(&self, now: u64) -> u64 {
        self.tats.iter().map(|&tat| tat.saturating_sub(now)).max().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        &self.name == EMPTY
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEN);
        out.push(VERSION);
        out.extend_from_slice(&self.name);
        for tat in self.tats {
            out.extend_from_slice(&tat.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Record> {
        if bytes.len() != LEN || bytes.first() != Some(&VERSION) {
            return None;
        }
        let mut name = [0u8; NAME_LEN];
        name.copy_from_slice(bytes.get(1..1 + NAME_LEN)?);
        let mut tats = [0u64; BUCKETS];
        for (i, tat) in tats.iter_mut().enumerate() {
            let at = 1 + NAME_LEN + 8 * i;
            *tat = u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?);
        }
        Some(Record { name, tats })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let key = KeyName::Id("0123456789abcdef".into());
        let mut r = Record::fresh(&key);
        r.tats = [1, u64::MAX, 42, 0, 7, 8, 9];
        let back = Record::decode(&r.encode()).unwrap();
        assert_eq!(back, r);
        assert!(back.is(&key) && !back.is(&KeyName::Anonymous));
        assert_eq!(Record::decode(b""), None);
        assert_eq!(Record::decode(&[1; LEN]), None);
        assert_eq!(Record::decode(&r.encode()[..LEN - 1]), None);
        assert_ne!(KeyName::Anonymous.hash(), key.hash());
    }
}
