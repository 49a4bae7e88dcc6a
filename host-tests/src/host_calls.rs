//! Counts of the guest's calls into host imports (every `proxy_*` import and every WASI one), so a
//! test can pin how many host calls the filter makes per request: each costs 0.6-1 µs in Envoy.
//!
//! Each import is counted once per call by the wrapper it was registered with
//! (`hostcalls::imports`), into the running callback's tally; when the callback returns, the VM
//! adds the tally to the context the callback ran for (a stream's request or response side, or
//! the VM's root).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Names of the registered imports, in registration order: the name of counter `i` is at `i`.
pub(crate) type ImportNames = Arc<[&'static str]>;

/// Calls per import, indexed in registration order (the linker's order, the same for every VM
/// of a plugin). Cheap to bump: one add, on a vector that grows only the first time an import is
/// called.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallCounts(Vec<u32>);

impl CallCounts {
    /// One more call of the import registered at `index`.
    #[inline]
    pub(crate) fn count(&mut self, index: usize) {
        match self.0.get_mut(index) {
            Some(calls) => *calls += 1,
            None => {
                self.0.resize(index + 1, 0);
                self.0[index] = 1;
            }
        }
    }

    /// Adds `tally` here and leaves it at zero, keeping its storage for the next callback.
    pub(crate) fn take_from(&mut self, tally: &mut CallCounts) {
        if self.0.len() < tally.0.len() {
            self.0.resize(tally.0.len(), 0);
        }
        for (total, calls) in self.0.iter_mut().zip(tally.0.iter_mut()) {
            *total += std::mem::take(calls);
        }
    }

    /// The counts by import name; `names` is the registration order.
    pub(crate) fn named(&self, names: &[&'static str]) -> HostCalls {
        let by_import = self
            .0
            .iter()
            .enumerate()
            .filter(|(_, calls)| **calls > 0)
            .map(|(index, calls)| (names.get(index).copied().unwrap_or("?"), *calls))
            .collect();
        HostCalls { by_import }
    }
}

/// A stream's calls, on each side of the first response callback.
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamCallCounts {
    pub(crate) request: CallCounts,
    pub(crate) response: CallCounts,
}

/// How many times the guest called each host import. WASI imports count too: their names
/// (`fd_write`, `random_get`, ...) never start with `proxy_`, which tells them apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostCalls {
    by_import: BTreeMap<&'static str, u32>,
}

impl HostCalls {
    /// Every call, proxy-wasm and WASI.
    pub fn total(&self) -> u32 {
        self.by_import.values().sum()
    }

    /// Calls of `proxy_*` imports.
    pub fn proxy(&self) -> u32 {
        self.matching(|name| name.starts_with("proxy_"))
    }

    /// Calls of WASI imports.
    pub fn wasi(&self) -> u32 {
        self.matching(|name| !name.starts_with("proxy_"))
    }

    /// Calls of one import (0 if the guest never called it).
    pub fn get(&self, import: &str) -> u32 {
        self.by_import.get(import).copied().unwrap_or(0)
    }

    /// Calls by import name, only imports called at least once.
    pub fn by_import(&self) -> &BTreeMap<&'static str, u32> {
        &self.by_import
    }

    fn matching(&self, keep: impl Fn(&str) -> bool) -> u32 {
        self.by_import
            .iter()
            .filter(|(name, _)| keep(name))
            .map(|(_, calls)| calls)
            .sum()
    }
}

/// `7 (proxy_get_header_map_pairs 1, proxy_log 2, ...)`: the total, then each import.
impl fmt::Display for HostCalls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.total())?;
        for (i, (name, calls)) in self.by_import.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name} {calls}")?;
        }
        write!(f, ")")
    }
}

/// The host calls a stream's callbacks made, split where the response begins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamHostCalls {
    /// From the stream's creation (`proxy_on_context_create`) up to the first response callback:
    /// the request callbacks and the callout answers delivered to the stream meanwhile.
    pub request: HostCalls,
    /// From the first response callback (of the upstream response or a local reply) on: response
    /// callbacks, callout answers, and the end of the stream (`on_done`, `on_log`, `on_delete`).
    /// A stream that ends before any response (a reset, `Gateway::finish`) has its end counted
    /// on the request side.
    pub response: HostCalls,
}

impl StreamHostCalls {
    /// Both sides together.
    pub fn total(&self) -> u32 {
        self.request.total() + self.response.total()
    }
}

impl fmt::Display for StreamHostCalls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request {}; response {}", self.request, self.response)
    }
}
