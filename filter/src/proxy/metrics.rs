//! The filter's stats on the host: every [`Metric`] defined once per VM, plans' deltas applied.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType, Status};

use super::log;
use crate::gate::{Metric, Stats};

/// The host's metric id of every [`Metric`], by `Metric::index`.
pub(crate) struct Metrics {
    ids: [u32; Metric::COUNT],
}

impl Metrics {
    pub fn define() -> Result<Metrics, Status> {
        let mut ids = [0; Metric::COUNT];
        for metric in Metric::all() {
            let kind = if metric.is_histogram() { MetricType::Histogram } else { MetricType::Counter };
            if let Some(id) = ids.get_mut(metric.index()) {
                *id = hostcalls::define_metric(kind, metric.name())?;
            }
        }
        Ok(Metrics { ids })
    }

    /// One host call per counter increment or histogram sample.
    pub fn apply(&self, stats: &Stats) {
        for (metric, value) in stats.iter() {
            let Some(&id) = self.ids.get(metric.index()) else { continue };
            let done = if metric.is_histogram() {
                hostcalls::record_metric(id, value)
            } else {
                hostcalls::increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX))
            };
            if let Err(s) = done {
                log(LogLevel::Warn, &format!("tokengate: cannot update metric {}: {s:?}", metric.name()));
            }
        }
    }
}
