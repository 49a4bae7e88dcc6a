//! The clock every VM of a gateway reads (proxy time, WASI clocks): frozen unless the test moves it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2025-01-01T00:00:00Z, the default start, so runs are reproducible.
const DEFAULT_START_NANOS: u64 = 1_735_689_600_000_000_000;

/// A shared, controllable wall clock. Cloning gives another handle to the same clock.
#[derive(Clone, Debug)]
pub struct Clock {
    inner: Arc<ClockInner>,
}

#[derive(Debug)]
struct ClockInner {
    /// Nanoseconds since the Unix epoch (manual mode) or offset added to the system time.
    nanos: AtomicU64,
    start: AtomicU64,
    follows_system: bool,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::manual()
    }
}

impl Clock {
    /// A frozen clock at 2025-01-01T00:00:00Z; only `advance`/`set` move it.
    pub fn manual() -> Clock {
        Clock::new(DEFAULT_START_NANOS, false)
    }

    /// A clock that follows the machine's clock (plus whatever `advance` adds): for benchmarks
    /// and for filters that measure durations.
    pub fn system() -> Clock {
        Clock::new(0, true)
    }

    fn new(nanos: u64, follows_system: bool) -> Clock {
        let clock = Clock {
            inner: Arc::new(ClockInner {
                nanos: AtomicU64::new(nanos),
                start: AtomicU64::new(0),
                follows_system,
            }),
        };
        let start = clock.now_nanos();
        clock.inner.start.store(start, Ordering::SeqCst);
        clock
    }

    /// Nanoseconds since the Unix epoch, as `proxy_get_current_time_nanoseconds` returns them.
    pub fn now_nanos(&self) -> u64 {
        let base = self.inner.nanos.load(Ordering::SeqCst);
        if self.inner.follows_system {
            let system = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            system.saturating_add(base)
        } else {
            base
        }
    }

    /// The time as a `SystemTime`.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.now_nanos())
    }

    /// Nanoseconds since the clock was made: the WASI monotonic clock.
    pub fn monotonic_nanos(&self) -> u64 {
        self.now_nanos()
            .saturating_sub(self.inner.start.load(Ordering::SeqCst))
    }

    /// Moves the clock forward. (Use `Gateway::advance` to also fire ticks and due callouts.)
    pub fn advance(&self, by: Duration) {
        self.inner
            .nanos
            .fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }

    /// Sets a manual clock to `time` (on a system clock, sets the offset from the machine's time).
    pub fn set(&self, time: SystemTime) {
        let nanos = time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        if self.inner.follows_system {
            let system = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            self.inner
                .nanos
                .store(nanos.saturating_sub(system), Ordering::SeqCst);
        } else {
            self.inner.nanos.store(nanos, Ordering::SeqCst);
        }
    }
}
