//! What a `wasmtime::Store` holds: one VM's contexts and streams, plus an `Arc` of what a gateway's VMs share.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use wasmtime::{Memory, TypedFunc};

use crate::abi::{Action, LogLevel, Pairs};
use crate::calls::{
    CallResponse, GrpcCall, GrpcDelivery, GrpcResponder, HttpCall, HttpResponder, PendingCallout,
};
use crate::clock::Clock;
use crate::host_calls::{CallCounts, StreamCallCounts};
use crate::outcome::{ForeignCall, LocalReply, LogLine};

/// The per-VM state wasmtime hands to every hostcall.
pub struct HostState {
    /// Index of this VM in its gateway.
    pub(crate) vm: usize,
    pub(crate) shared: Arc<Shared>,
    /// Memory and allocator of the instance, cached once it exists.
    pub(crate) guest: Option<GuestExports>,
    pub(crate) root_context_id: u32,
    /// The context hostcalls act on: set before each callback, changed by `proxy_set_effective_context`.
    pub(crate) current_context: u32,
    pub(crate) vm_configuration: Vec<u8>,
    pub(crate) plugin_configuration: Vec<u8>,
    /// Properties the host answers (`plugin_root_id`, ...), keyed by NUL-joined path.
    pub(crate) properties: BTreeMap<Vec<u8>, Vec<u8>>,
    pub(crate) tick_period: Option<Duration>,
    pub(crate) streams: HashMap<u32, Stream>,
    pub(crate) pending_callouts: Vec<PendingCallout>,
    /// The http call response visible to `proxy_on_http_call_response`.
    pub(crate) call_response: Option<CallResponse>,
    /// The gRPC message/status visible to `proxy_on_grpc_*`.
    pub(crate) grpc_delivery: Option<GrpcDelivery>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// State of the deterministic generator behind WASI `random_get`.
    pub(crate) rng: u64,
    pub(crate) log_level: LogLevel,
    /// Envoy's `per_connection_buffer_limit_bytes`: the most a paused side may buffer.
    pub(crate) buffer_limit: Option<usize>,
    /// Set by `proc_exit`; the call that made it ends in a trap.
    pub(crate) exit_code: Option<i32>,
    /// Host calls of the callback running now; the VM moves them to its context when it returns.
    pub(crate) host_calls: CallCounts,
    /// Host calls of callbacks on contexts that are not streams (the root: start, ticks, ...).
    pub(crate) root_host_calls: CallCounts,
}

impl HostState {
    pub(crate) fn new(vm: usize, shared: Arc<Shared>, seed: u64) -> HostState {
        HostState {
            vm,
            shared,
            guest: None,
            root_context_id: 1,
            current_context: 0,
            vm_configuration: Vec::new(),
            plugin_configuration: Vec::new(),
            properties: BTreeMap::new(),
            tick_period: None,
            streams: HashMap::new(),
            pending_callouts: Vec::new(),
            call_response: None,
            grpc_delivery: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            rng: seed ^ 0x9e37_79b9_7f4a_7c15 ^ (vm as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            log_level: LogLevel::Info,
            buffer_limit: None,
            exit_code: None,
            host_calls: CallCounts::default(),
            root_host_calls: CallCounts::default(),
        }
    }

    /// The stream the current context belongs to, if the current context is a stream.
    pub(crate) fn current_stream(&mut self) -> Option<&mut Stream> {
        self.streams.get_mut(&self.current_context)
    }

    pub(crate) fn log(&self, level: LogLevel, message: String) {
        self.shared.logs().push(LogLine {
            vm: self.vm,
            context_id: self.current_context,
            level,
            message,
        });
    }
}

/// The instance's memory and allocator (`proxy_on_memory_allocate`, else `malloc`).
#[derive(Clone)]
pub(crate) struct GuestExports {
    pub(crate) memory: Memory,
    pub(crate) allocate: Option<TypedFunc<u32, u32>>,
}

/// What all VMs of one gateway share, like an Envoy process: stats, shared data, queues, the clock.
pub struct Shared {
    pub(crate) clock: Clock,
    /// Envoy's `vm_id`: shared data and queues are scoped by it.
    pub(crate) vm_id: String,
    metrics: Mutex<Metrics>,
    data: Mutex<SharedData>,
    logs: Mutex<Vec<LogLine>>,
    callouts: Mutex<Callouts>,
}

impl Shared {
    pub(crate) fn new(clock: Clock, vm_id: String) -> Shared {
        Shared {
            clock,
            vm_id,
            metrics: Mutex::new(Metrics::default()),
            data: Mutex::new(SharedData {
                next_cas: 1,
                ..SharedData::default()
            }),
            logs: Mutex::new(Vec::new()),
            callouts: Mutex::new(Callouts::default()),
        }
    }

    pub(crate) fn metrics(&self) -> MutexGuard<'_, Metrics> {
        lock(&self.metrics)
    }

    pub(crate) fn data(&self) -> MutexGuard<'_, SharedData> {
        lock(&self.data)
    }

    pub(crate) fn logs(&self) -> MutexGuard<'_, Vec<LogLine>> {
        lock(&self.logs)
    }

    pub(crate) fn callouts(&self) -> MutexGuard<'_, Callouts> {
        lock(&self.callouts)
    }
}

/// A poisoned lock only means another test thread panicked mid-update; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The value of one stat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricValue {
    Counter(u64),
    Gauge(i64),
    /// Every recorded sample, in order.
    Histogram(Vec<u64>),
}

#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) ids: HashMap<String, u32>,
    pub(crate) stats: Vec<(String, MetricValue)>,
}

#[derive(Default)]
pub(crate) struct SharedData {
    pub(crate) values: HashMap<String, (Vec<u8>, u32)>,
    pub(crate) next_cas: u32,
    pub(crate) queues: Vec<SharedQueue>,
}

impl SharedData {
    /// Envoy's `nextCas`: increasing, never 0 (0 means "no cas").
    pub(crate) fn next_cas(&mut self) -> u32 {
        let cas = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        cas
    }
}

pub(crate) struct SharedQueue {
    pub(crate) vm_id: String,
    pub(crate) name: String,
    pub(crate) items: VecDeque<Vec<u8>>,
}

/// Scripted answers to callouts and the record of every callout made.
#[derive(Default)]
pub(crate) struct Callouts {
    pub(crate) next_token: u32,
    pub(crate) http_responder: Option<HttpResponder>,
    pub(crate) grpc_responder: Option<GrpcResponder>,
    pub(crate) http_calls: Vec<HttpCall>,
    pub(crate) grpc_calls: Vec<GrpcCall>,
}

/// One HTTP stream (an HTTP context in the guest), both directions.
#[derive(Default)]
pub(crate) struct Stream {
    pub(crate) request: Side,
    pub(crate) response: Side,
    pub(crate) local_reply: Option<LocalReply>,
    /// The local reply went through the response callbacks to the client.
    pub(crate) local_reply_sent: bool,
    /// Local replies after the first, which Envoy ignores.
    pub(crate) extra_local_replies: u32,
    /// `proxy_close_stream` was called: Envoy resets the stream.
    pub(crate) reset: bool,
    pub(crate) filter_state: BTreeMap<String, Vec<u8>>,
    pub(crate) foreign_calls: Vec<ForeignCall>,
    pub(crate) finished: bool,
    /// Index in the gateway log where this stream's lines start.
    pub(crate) log_start: usize,
    /// Host calls of this stream's callbacks, request side and response side.
    pub(crate) host_calls: StreamCallCounts,
}

/// One direction of a stream: what the filter sees and what went on past it.
#[derive(Default)]
pub(crate) struct Side {
    pub(crate) started: bool,
    pub(crate) headers: Option<Pairs>,
    pub(crate) trailers: Option<Pairs>,
    /// The buffer body callbacks see: every chunk since the last `Continue`.
    pub(crate) body: Option<Vec<u8>>,
    /// Every chunk, trailers included, has been given to the filter.
    pub(crate) input_done: bool,
    /// Headers as they went on (snapshot taken when iteration continued past them).
    pub(crate) sent_headers: Option<Pairs>,
    pub(crate) sent_body: Vec<u8>,
    pub(crate) sent_trailers: Option<Pairs>,
    /// `proxy_continue_stream` was called for this direction and not yet acted on.
    pub(crate) resume: bool,
    pub(crate) actions: Vec<(&'static str, Action)>,
}

impl Side {
    /// Everything the filter was given has gone on.
    pub(crate) fn complete(&self) -> bool {
        self.input_done
            && self.sent_headers.is_some()
            && self.body.is_none()
            && (self.trailers.is_none() || self.sent_trailers.is_some())
    }
}
