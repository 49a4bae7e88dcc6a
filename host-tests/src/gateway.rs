//! The high-level harness: a gateway of one or more VMs of the plugin, driven request by request
//! like Envoy drives a filter, with the clock, stats, shared data and logs in reach of the test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::abi::{LogLevel, Pairs};
use crate::calls::{GrpcCall, GrpcReply, HttpCall, HttpReply};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::flow::{self, Direction, Input};
use crate::outcome::{LogLine, Outcome, StreamId};
use crate::plugin::Plugin;
use crate::state::{HostState, MetricValue, Shared};
use crate::vm::Vm;

/// Envoy's default `per_connection_buffer_limit_bytes`.
pub const ENVOY_BUFFER_LIMIT: usize = 1024 * 1024;

/// The authority requests get unless the test sets one.
pub const DEFAULT_AUTHORITY: &str = "gateway.test";

/// Builds a message: headers in order, body chunks, optional trailers.
#[derive(Clone, Debug, Default)]
struct Parts {
    headers: Pairs,
    chunks: Vec<Vec<u8>>,
    trailers: Option<Pairs>,
}

impl Parts {
    fn set_header(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|(k, _)| *k != name);
        self.headers.push((name, value.to_string()));
    }

    fn set_body(&mut self, body: Vec<u8>) {
        self.set_header("content-length", &body.len().to_string());
        self.chunks = if body.is_empty() {
            Vec::new()
        } else {
            vec![body]
        };
    }

    fn rechunk(&mut self, size: usize) {
        let body: Vec<u8> = self.chunks.concat();
        self.chunks = body.chunks(size.max(1)).map(<[u8]>::to_vec).collect();
    }

    fn input(&self) -> Input {
        Input {
            headers: self.headers.clone(),
            chunks: self.chunks.clone(),
            trailers: self.trailers.clone(),
        }
    }
}

/// Builder methods shared by `Request` and `Response`.
macro_rules! message_builder {
    ($ty:ident) => {
        impl $ty {
            /// Sets a header (name lowercased, as Envoy's maps hold it), replacing earlier values.
            pub fn header(mut self, name: &str, value: &str) -> Self {
                self.parts.set_header(name, value);
                self
            }

            /// Adds a header value, keeping earlier ones.
            pub fn add_header(mut self, name: &str, value: &str) -> Self {
                self.parts
                    .headers
                    .push((name.to_ascii_lowercase(), value.to_string()));
                self
            }

            /// Removes every value of a header.
            pub fn without_header(mut self, name: &str) -> Self {
                let name = name.to_ascii_lowercase();
                self.parts.headers.retain(|(k, _)| *k != name);
                self
            }

            /// The body in one chunk, with `content-length`.
            pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
                self.parts.set_body(body.into());
                self
            }

            /// A JSON body (text as given, so malformed JSON can be sent) with `content-type`.
            pub fn json(self, body: impl AsRef<str>) -> Self {
                self.header("content-type", "application/json")
                    .body(body.as_ref().as_bytes().to_vec())
            }

            /// The body as these chunks, sent without `content-length` (chunked transfer).
            pub fn chunks<I, C>(mut self, chunks: I) -> Self
            where
                I: IntoIterator<Item = C>,
                C: Into<Vec<u8>>,
            {
                self.parts.chunks = chunks.into_iter().map(Into::into).collect();
                self.without_header("content-length")
                    .header("transfer-encoding", "chunked")
            }

            /// Splits the body into chunks of `size` bytes, headers unchanged.
            pub fn in_chunks(mut self, size: usize) -> Self {
                self.parts.rechunk(size);
                self
            }

            /// Adds a trailer.
            pub fn trailer(mut self, name: &str, value: &str) -> Self {
                self.parts
                    .trailers
                    .get_or_insert_with(Vec::new)
                    .push((name.to_ascii_lowercase(), value.to_string()));
                self
            }

            /// The headers as they will be sent.
            pub fn headers(&self) -> &Pairs {
                &self.parts.headers
            }

            /// The body chunks as they will be sent.
            pub fn body_chunks(&self) -> &[Vec<u8>] {
                &self.parts.chunks
            }
        }
    };
}

/// A request as Envoy's header map holds it: pseudo-headers first, names lowercase.
#[derive(Clone, Debug)]
pub struct Request {
    parts: Parts,
    vm: Option<usize>,
}

message_builder!(Request);

impl Request {
    /// `:method`, `:path`, `:authority`, `:scheme` and nothing else.
    pub fn new(method: &str, path: &str) -> Request {
        let headers = [
            (":authority", DEFAULT_AUTHORITY),
            (":path", path),
            (":method", method),
            (":scheme", "http"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Request {
            parts: Parts {
                headers,
                ..Parts::default()
            },
            vm: None,
        }
    }

    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    pub fn post(path: &str) -> Request {
        Request::new("POST", path)
    }

    /// Exactly these headers and chunks, nothing added (no pseudo-headers, no content-length).
    pub fn raw(headers: &[(&str, &str)], chunks: &[&[u8]]) -> Request {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let chunks = chunks.iter().map(|c| c.to_vec()).collect();
        Request {
            parts: Parts {
                headers,
                chunks,
                trailers: None,
            },
            vm: None,
        }
    }

    /// Sends the request to VM `index` instead of the next one in round-robin order.
    pub fn on_vm(mut self, index: usize) -> Request {
        self.vm = Some(index);
        self
    }
}

/// An upstream response.
#[derive(Clone, Debug)]
pub struct Response {
    parts: Parts,
}

message_builder!(Response);

impl Response {
    /// A response with `:status` only.
    pub fn new(status: u16) -> Response {
        Response {
            parts: Parts {
                headers: vec![(":status".to_string(), status.to_string())],
                ..Parts::default()
            },
        }
    }

    /// `200` with no body yet.
    pub fn ok() -> Response {
        Response::new(200)
    }

    /// Exactly these headers and chunks.
    pub fn raw(headers: &[(&str, &str)], chunks: &[&[u8]]) -> Response {
        let request = Request::raw(headers, chunks);
        Response {
            parts: request.parts,
        }
    }
}

/// Settings of a gateway before its VMs start.
#[derive(Clone)]
pub struct GatewayBuilder {
    plugin: Option<Plugin>,
    plugin_config: Vec<u8>,
    vm_config: Vec<u8>,
    vms: usize,
    clock: Clock,
    vm_id: String,
    root_id: String,
    properties: Vec<(Vec<u8>, Vec<u8>)>,
    seed: u64,
    log_level: LogLevel,
    buffer_limit: Option<usize>,
}

impl Default for GatewayBuilder {
    fn default() -> Self {
        GatewayBuilder {
            plugin: None,
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            vms: 1,
            clock: Clock::manual(),
            vm_id: "tokengate".to_string(),
            root_id: "tokengate".to_string(),
            properties: Vec::new(),
            seed: 0x746f_6b65_6e67_6174,
            log_level: LogLevel::Info,
            buffer_limit: Some(ENVOY_BUFFER_LIMIT),
        }
    }
}

impl GatewayBuilder {
    /// The plugin to run (default: the real tokengate.wasm).
    pub fn plugin(mut self, plugin: Plugin) -> Self {
        self.plugin = Some(plugin);
        self
    }

    /// The plugin configuration (`configuration` in Envoy's filter config).
    pub fn config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.plugin_config = config.into();
        self
    }

    /// The VM configuration (`vm_config.configuration`).
    pub fn vm_config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.vm_config = config.into();
        self
    }

    /// How many VMs (Envoy: one per worker thread); they share stats and shared data.
    pub fn vms(mut self, count: usize) -> Self {
        self.vms = count.max(1);
        self
    }

    /// The clock (default: manual, frozen at 2025-01-01T00:00:00Z).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Envoy's `vm_id` (scopes shared data and queues) and `plugin_vm_id`.
    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.vm_id = vm_id.to_string();
        self
    }

    /// Envoy's `root_id` (the `plugin_root_id` property).
    pub fn root_id(mut self, root_id: &str) -> Self {
        self.root_id = root_id.to_string();
        self
    }

    /// A property `get_property` answers; `path` segments as in the SDK (`["node", "id"]`).
    pub fn property(mut self, path: &[&str], value: impl Into<Vec<u8>>) -> Self {
        self.properties
            .push((path.join("\0").into_bytes(), value.into()));
        self
    }

    /// Seed of the deterministic WASI `random_get`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The level `proxy_get_log_level` reports (default info, as Envoy's; every line is captured
    /// regardless).
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.log_level = level;
        self
    }

    /// Envoy's `per_connection_buffer_limit_bytes` (default 1 MiB): a paused side that buffers
    /// more gets Envoy's own 413 (request) or 500 (response). `None`: no limit.
    pub fn buffer_limit(mut self, bytes: Option<usize>) -> Self {
        self.buffer_limit = bytes;
        self
    }

    /// Instantiates the VMs and runs Envoy's start sequence on each.
    pub fn build(self) -> Result<Gateway> {
        let plugin = match self.plugin.clone() {
            Some(plugin) => plugin,
            None => Plugin::tokengate()?,
        };
        let shared = Arc::new(Shared::new(self.clock.clone(), self.vm_id.clone()));
        let mut vms = Vec::with_capacity(self.vms);
        for index in 0..self.vms {
            let mut state = HostState::new(index, shared.clone(), self.seed);
            state.vm_configuration = self.vm_config.clone();
            state.plugin_configuration = self.plugin_config.clone();
            state.log_level = self.log_level;
            state.buffer_limit = self.buffer_limit;
            for (name, value) in [
                ("plugin_root_id", &self.root_id),
                ("plugin_name", &self.root_id),
                ("plugin_vm_id", &self.vm_id),
            ] {
                state
                    .properties
                    .insert(name.as_bytes().to_vec(), value.as_bytes().to_vec());
            }
            state.properties.extend(self.properties.iter().cloned());
            let mut vm = Vm::new(&plugin, state)?;
            vm.start()?;
            vms.push(vm);
        }
        let next_tick = vec![None; vms.len()];
        let mut gateway = Gateway {
            plugin,
            shared,
            vms,
            next_vm: 0,
            next_tick,
        };
        gateway.schedule_ticks();
        Ok(gateway)
    }
}

/// One or more VMs of a plugin behind a pretend Envoy.
pub struct Gateway {
    plugin: Plugin,
    shared: Arc<Shared>,
    vms: Vec<Vm>,
    next_vm: usize,
    /// When each VM's next `on_tick` is due (nanoseconds), if it asked for ticks.
    next_tick: Vec<Option<u64>>,
}

impl Gateway {
    /// The real filter with this plugin configuration, one VM.
    pub fn new(config: &str) -> Result<Gateway> {
        Gateway::builder().config(config).build()
    }

    /// The real filter with this plugin configuration, `vms` VMs sharing stats and shared data.
    pub fn with_vms(config: &str, vms: usize) -> Result<Gateway> {
        Gateway::builder().config(config).vms(vms).build()
    }

    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// Sends a request through the filter. The stream stays open for `response` unless it ended
    /// (a local reply or a reset end it, after the local reply went through the response callbacks).
    pub fn request(&mut self, request: Request) -> Result<Outcome> {
        let index = match request.vm {
            Some(index) if index < self.vms.len() => index,
            Some(index) => {
                return Err(Error::Usage(format!(
                    "no vm {index}: the gateway has {}",
                    self.vms.len()
                )))
            }
            None => {
                let index = self.next_vm % self.vms.len();
                self.next_vm = self.next_vm.wrapping_add(1);
                index
            }
        };
        let log_start = self.shared.logs().len();
        let vm = &mut self.vms[index];
        let context = vm.create_stream(log_start)?;
        flow::drive(vm, context, Direction::Request, request.parts.input())?;
        flow::conclude(vm, context)?;
        self.snapshot(StreamId {
            vm: index,
            context_id: context,
        })
    }

    /// Sends exactly these headers and body chunks (see `Request::raw`).
    pub fn send(&mut self, headers: &[(&str, &str)], chunks: &[&[u8]]) -> Result<Outcome> {
        self.request(Request::raw(headers, chunks))
    }

    /// Sends the upstream response of a forwarded request through the filter; the stream ends
    /// (`on_done`, `on_log`, `on_delete`) once the response went through.
    pub fn response(&mut self, to: &Outcome, response: Response) -> Result<Outcome> {
        let id = to.stream;
        let vm = self.vm_mut(id.vm)?;
        match vm.stream(id.context_id) {
            Some(stream) if !stream.finished => {}
            _ => {
                return Err(Error::Usage(format!(
                    "stream {id:?} has ended (local reply, reset or finished)"
                )))
            }
        }
        flow::drive(
            vm,
            id.context_id,
            Direction::Response,
            response.parts.input(),
        )?;
        flow::conclude(vm, id.context_id)?;
        self.snapshot(id)
    }

    /// Request then, if it was forwarded, the response: one whole exchange.
    pub fn exchange(&mut self, request: Request, response: Response) -> Result<Outcome> {
        let outcome = self.request(request)?;
        if outcome.finished || outcome.decision != crate::outcome::Decision::Forwarded {
            return Ok(outcome);
        }
        self.response(&outcome, response)
    }

    /// Ends a stream now, as when the client goes away: `on_done`, `on_log`, `on_delete`.
    pub fn finish(&mut self, stream: StreamId) -> Result<Outcome> {
        self.vm_mut(stream.vm)?.finish_stream(stream.context_id)?;
        self.snapshot(stream)
    }

    /// The current state of a stream still open (after `advance` delivered callouts, say).
    pub fn outcome(&self, stream: StreamId) -> Result<Outcome> {
        let vm = self
            .vms
            .get(stream.vm)
            .ok_or_else(|| Error::Usage(format!("no vm {}", stream.vm)))?;
        flow::outcome(vm, stream.context_id)
    }

    /// Outcome of a stream; a finished stream is forgotten by the host afterwards.
    fn snapshot(&mut self, id: StreamId) -> Result<Outcome> {
        let vm = self.vm_mut(id.vm)?;
        let outcome = flow::outcome(vm, id.context_id)?;
        if outcome.finished {
            vm.state_mut().streams.remove(&id.context_id);
        }
        Ok(outcome)
    }

    fn vm_mut(&mut self, index: usize) -> Result<&mut Vm> {
        let count = self.vms.len();
        self.vms
            .get_mut(index)
            .ok_or_else(|| Error::Usage(format!("no vm {index}: the gateway has {count}")))
    }

    /// The shared clock. Moving it directly fires nothing; `advance` also fires ticks and callouts.
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// Moves the clock forward, firing every tick and delivering every callout answer that falls
    /// due on the way, in time order.
    pub fn advance(&mut self, by: Duration) -> Result<()> {
        let target = self
            .shared
            .clock
            .now_nanos()
            .saturating_add(by.as_nanos() as u64);
        loop {
            self.schedule_ticks();
            let next_callout = self
                .vms
                .iter()
                .flat_map(|vm| vm.state().pending_callouts.iter().map(|p| p.due_nanos))
                .min();
            let next_tick = self.next_tick.iter().flatten().copied().min();
            let next = [next_callout, next_tick]
                .into_iter()
                .flatten()
                .min()
                .filter(|t| *t <= target);
            let Some(at) = next else { break };
            let now = self.shared.clock.now_nanos();
            if at > now {
                self.shared.clock.advance(Duration::from_nanos(at - now));
            }
            for vm in &mut self.vms {
                flow::deliver_callouts(vm, None)?;
            }
            for index in 0..self.vms.len() {
                if self.next_tick[index].is_some_and(|due| due <= at) {
                    self.next_tick[index] = None;
                    self.vms[index].tick()?;
                    self.schedule_tick(index, at);
                }
            }
        }
        let now = self.shared.clock.now_nanos();
        if target > now {
            self.shared
                .clock
                .advance(Duration::from_nanos(target - now));
        }
        Ok(())
    }

    /// Calls `on_tick` now on every VM that set a tick period.
    pub fn tick(&mut self) -> Result<()> {
        for vm in &mut self.vms {
            if vm.state().tick_period.is_some() {
                vm.tick()?;
            }
        }
        Ok(())
    }

    fn schedule_ticks(&mut self) {
        let now = self.shared.clock.now_nanos();
        for index in 0..self.vms.len() {
            match self.vms[index].state().tick_period {
                None => self.next_tick[index] = None,
                Some(_) if self.next_tick[index].is_none() => self.schedule_tick(index, now),
                Some(_) => {}
            }
        }
    }

    fn schedule_tick(&mut self, index: usize, from: u64) {
        self.next_tick[index] = self.vms[index]
            .state()
            .tick_period
            .map(|period| from.saturating_add(period.as_nanos() as u64));
    }

    /// How HTTP callouts are answered; `None` means an unknown cluster (`BadArgument`).
    pub fn on_http_call(
        &mut self,
        responder: impl FnMut(&HttpCall) -> Option<HttpReply> + Send + 'static,
    ) {
        self.shared.callouts().http_responder = Some(Box::new(responder));
    }

    /// How gRPC calls are answered; `None` means the service could not be parsed (`ParseFailure`).
    pub fn on_grpc_call(
        &mut self,
        responder: impl FnMut(&GrpcCall) -> Option<GrpcReply> + Send + 'static,
    ) {
        self.shared.callouts().grpc_responder = Some(Box::new(responder));
    }

    /// Every HTTP callout dispatched so far.
    pub fn http_calls(&self) -> Vec<HttpCall> {
        self.shared.callouts().http_calls.clone()
    }

    /// Every gRPC call dispatched so far.
    pub fn grpc_calls(&self) -> Vec<GrpcCall> {
        self.shared.callouts().grpc_calls.clone()
    }

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
    pub fn metrics(&self) -> std::collections::BTreeMap<String, MetricValue> {
        self.shared.metrics().stats.iter().cloned().collect()
    }

    fn metric(&self, name: &str) -> Option<MetricValue> {
        let metrics = self.shared.metrics();
        let id = *metrics.ids.get(name)?;
        Some(metrics.stats[id as usize].1.clone())
    }

    /// A counter's value (`None` if no VM defined it, or it is not a counter).
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

    /// Benchmark hook: `n` whole exchanges (the request; the response too when it was forwarded),
    /// round-robin over the VMs; returns the wall time they took. The outcomes are dropped.
    pub fn run_requests(
        &mut self,
        n: usize,
        request: &Request,
        response: &Response,
    ) -> Result<Duration> {
        let started = Instant::now();
        for _ in 0..n {
            self.exchange(request.clone(), response.clone())?;
        }
        Ok(started.elapsed())
    }
}
