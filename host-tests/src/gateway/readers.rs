//! What a test reads off a gateway besides outcomes: logs, stats, shared data, and the VMs and
//! plugin themselves.

use std::collections::BTreeMap;

use crate::outcome::LogLine;
use crate::plugin::Plugin;
use crate::state::MetricValue;
use crate::vm::Vm;

use super::exchange::Gateway;

impl Gateway {
    /// Every log line of every VM, in order.
    pub fn logs(&self) -> Vec<LogLine> {
        self.shared.logs().clone()
    }

    /// Every log line as text, one per line.
    pub fn logs_text(&self) -> String {
        self.shared
            .logs()
            .iter()
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// Every stat, by name.
    pub fn metrics(&self) -> BTreeMap<String, MetricValue> {
        self.shared.metrics().stats.iter().cloned().collect()
    }

    /// The stat `name`; for a per-model metric (defined as `<name>.model.<label>`, one series per
    /// label), its series added up: counters summed, histograms' samples in label order.
    fn metric(&self, name: &str) -> Option<MetricValue> {
        {
            let metrics = self.shared.metrics();
            if let Some(id) = metrics.ids.get(name) {
                return Some(metrics.stats[*id as usize].1.clone());
            }
        }
        let mut total: Option<MetricValue> = None;
        for value in self.series(name).into_values() {
            total = Some(match (total, value) {
                (None, v) => v,
                (Some(MetricValue::Counter(a)), MetricValue::Counter(b)) => MetricValue::Counter(a + b),
                (Some(MetricValue::Histogram(mut a)), MetricValue::Histogram(b)) => {
                    a.extend(b);
                    MetricValue::Histogram(a)
                }
                (Some(other), _) => other,
            });
        }
        total
    }

    /// A per-model metric's series, by label (the stats named `<name>.model.<label>`).
    pub fn series(&self, name: &str) -> BTreeMap<String, MetricValue> {
        let prefix = format!("{name}.model.");
        self.shared
            .metrics()
            .stats
            .iter()
            .filter_map(|(n, v)| Some((n.strip_prefix(&prefix)?.to_owned(), v.clone())))
            .collect()
    }

    /// A counter's value (`None` if no VM defined it, or it is not a counter); a per-model
    /// counter's series summed.
    pub fn counter(&self, name: &str) -> Option<u64> {
        match self.metric(name)? {
            MetricValue::Counter(value) => Some(value),
            _ => None,
        }
    }

    /// A gauge's value.
    pub fn gauge(&self, name: &str) -> Option<i64> {
        match self.metric(name)? {
            MetricValue::Gauge(value) => Some(value),
            _ => None,
        }
    }

    /// Every sample a histogram recorded.
    pub fn histogram(&self, name: &str) -> Option<Vec<u64>> {
        match self.metric(name)? {
            MetricValue::Histogram(samples) => Some(samples),
            _ => None,
        }
    }

    /// A shared data entry: value and cas.
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared.data().values.get(key).cloned()
    }

    /// Every shared data key, sorted.
    pub fn shared_data_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.shared.data().values.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Sets a shared data entry as another VM or process would (new cas).
    pub fn set_shared_data(&self, key: &str, value: impl Into<Vec<u8>>) {
        let mut data = self.shared.data();
        let cas = data.next_cas();
        data.values.insert(key.to_string(), (value.into(), cas));
    }

    /// Number of VMs.
    pub fn vm_count(&self) -> usize {
        self.vms.len()
    }

    /// A VM, for low-level access (stdout/stderr, calling exports, guest memory).
    pub fn vm(&mut self, index: usize) -> Option<&mut Vm> {
        self.vms.get_mut(index)
    }

    /// The plugin the VMs run.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }
}
