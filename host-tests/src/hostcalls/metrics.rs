//! Metric hostcalls with Envoy's stats semantics, shared by every VM of a gateway: defining a
//! name twice returns the same id; counters only grow; histograms record samples and can't be read.

use wasmtime::Caller;

use crate::abi::Status;
use crate::hostcalls::imports::Imports;
use crate::memory::{self, status, HostResult};
use crate::state::{HostState, MetricValue, Metrics};

pub(crate) fn add_to_linker(imports: &mut Imports<'_>) -> wasmtime::Result<()> {
    imports.func(
        "env",
        "proxy_define_metric",
        |mut caller: Caller<'_, HostState>,
         kind: u32,
         name_ptr: u32,
         name_len: u32,
         id_ptr: u32| { status(define(&mut caller, kind, name_ptr, name_len, id_ptr)) },
    )?;
    imports.func(
        "env",
        "proxy_increment_metric",
        |caller: Caller<'_, HostState>, id: u32, offset: i64| {
            status(with_metric(
                &mut caller.data().shared.metrics(),
                id,
                |value| increment(value, offset),
            ))
        },
    )?;
    imports.func(
        "env",
        "proxy_record_metric",
        |caller: Caller<'_, HostState>, id: u32, value: u64| {
            status(with_metric(
                &mut caller.data().shared.metrics(),
                id,
                |metric| record(metric, value),
            ))
        },
    )?;
    imports.func(
        "env",
        "proxy_get_metric",
        |mut caller: Caller<'_, HostState>, id: u32, value_ptr: u32| {
            let value = with_metric(
                &mut caller.data().shared.metrics(),
                id,
                |metric| match metric {
                    MetricValue::Counter(n) => Ok(*n),
                    MetricValue::Gauge(n) => Ok(*n as u64),
                    MetricValue::Histogram(_) => Err(Status::BadArgument),
                },
            );
            status(value.and_then(|value| memory::write_u64(&mut caller, value_ptr, value)))
        },
    )?;
    Ok(())
}

fn define(
    caller: &mut Caller<'_, HostState>,
    kind: u32,
    name_ptr: u32,
    name_len: u32,
    id_ptr: u32,
) -> HostResult {
    let fresh = match kind {
        0 => MetricValue::Counter(0),
        1 => MetricValue::Gauge(0),
        2 => MetricValue::Histogram(Vec::new()),
        _ => return Err(Status::BadArgument.into()),
    };
    let name = memory::read_string(caller, name_ptr, name_len)?;
    memory::check(caller, id_ptr, 4)?;
    let id = {
        let mut metrics = caller.data().shared.metrics();
        match metrics.ids.get(&name) {
            Some(&id)
                if std::mem::discriminant(&metrics.stats[id as usize].1)
                    == std::mem::discriminant(&fresh) =>
            {
                id
            }
            Some(_) => return Err(Status::BadArgument.into()),
            None => {
                let id = metrics.stats.len() as u32;
                metrics.stats.push((name.clone(), fresh));
                metrics.ids.insert(name, id);
                id
            }
        }
    };
    memory::write_u32(caller, id_ptr, id)
}

fn with_metric<T>(
    metrics: &mut Metrics,
    id: u32,
    op: impl FnOnce(&mut MetricValue) -> Result<T, Status>,
) -> HostResult<T> {
    let (_, value) = metrics.stats.get_mut(id as usize).ok_or(Status::NotFound)?;
    Ok(op(value)?)
}

fn increment(metric: &mut MetricValue, offset: i64) -> Result<(), Status> {
    match metric {
        MetricValue::Counter(n) if offset >= 0 => *n = n.saturating_add(offset as u64),
        MetricValue::Gauge(n) => *n = n.saturating_add(offset),
        MetricValue::Counter(_) | MetricValue::Histogram(_) => return Err(Status::BadArgument),
    }
    Ok(())
}

fn record(metric: &mut MetricValue, value: u64) -> Result<(), Status> {
    match metric {
        MetricValue::Counter(n) => *n = n.saturating_add(value),
        MetricValue::Gauge(n) => *n = value as i64,
        MetricValue::Histogram(samples) => samples.push(value),
    }
    Ok(())
}
