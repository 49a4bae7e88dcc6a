//! The filter's stats on the host: the per-proxy metrics defined once per VM; a per-model
//! metric's series defined for `other` and the operator's rules at configure time, and for a
//! built-in rule's label the first time a request carries it. Plans' deltas applied.

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType, Status};

use super::log;
use crate::config::Labels;
use crate::gate::{Metric, Stats};

/// The host's metric id of every series, by label then `Metric::index`; `UNDEFINED` until
/// defined (Envoy's first counter id is 0).
const UNDEFINED: u32 = u32::MAX;

pub(crate) struct Metrics {
    ids: Vec<Cell<u32>>,
    labels: Labels,
}

impl Metrics {
    /// Defines the per-proxy metrics, and every per-model metric for the first `eager` labels.
    pub fn define(labels: &Labels, eager: usize) -> Result<Metrics, Status> {
        let metrics = Metrics { ids: vec![Cell::new(UNDEFINED); labels.len() * Metric::COUNT], labels: labels.clone() };
        for label in 0..eager.min(labels.len()) {
            let label = u16::try_from(label).unwrap_or(u16::MAX);
            for metric in Metric::all() {
                if label == 0 || metric.is_per_model() {
                    metrics.id(metric, label)?;
                }
            }
        }
        Ok(metrics)
    }

    /// The series' id, defined on first use.
    fn id(&self, metric: Metric, label: u16) -> Result<u32, Status> {
        let label = if metric.is_per_model() { label } else { 0 };
        let slot = usize::from(label) * Metric::COUNT + metric.index();
        let Some(cell) = self.ids.get(slot) else { return Err(Status::NotFound) };
        if cell.get() == UNDEFINED {
            let kind = if metric.is_histogram() { MetricType::Histogram } else { MetricType::Counter };
            cell.set(hostcalls::define_metric(kind, &metric.series_name(self.labels.get(label)))?);
        }
        Ok(cell.get())
    }

    /// One host call per counter increment or histogram sample.
    pub fn apply(&self, stats: &Stats) {
        for (metric, value) in stats.iter() {
            let done = self.id(metric, stats.label).and_then(|id| {
                if metric.is_histogram() {
                    hostcalls::record_metric(id, value)
                } else {
                    hostcalls::increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX))
                }
            });
            if let Err(s) = done {
                log(LogLevel::Warn, &format!("tokengate: cannot update metric {}: {s:?}", metric.name()));
            }
        }
    }
}
