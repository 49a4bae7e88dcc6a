//! One HTTP stream on the host: reads what the gate asks for, hands it to the stream's
//! [`Exchange`], and carries out the plan that comes back with as few host calls as it allows.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action as HostAction, BufferType, LogLevel as HostLevel, MapType};

use super::store::SharedData;
use super::{log, Shared};
use crate::gate::{Action, Clock, Env, Exchange, HeaderEdits, LogLevel, Plan};

type HeaderMap = Vec<(String, String)>;

/// The host's clock.
struct HostClock;

impl Clock for HostClock {
    fn now_ns(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

fn env(shared: &Shared) -> Env<'_> {
    Env { config: &shared.config, store: &SharedData, clock: &HostClock, drift_log: &shared.drift_log }
}

#[inline(never)]
fn read_body(buffer: BufferType, size: usize) -> Result<Vec<u8>, String> {
    match hostcalls::get_buffer(buffer, 0, size) {
        Ok(bytes) => Ok(bytes.unwrap_or_default()),
        Err(s) => Err(format!("{s:?}")),
    }
}

pub(crate) struct Stream {
    shared: Option<Rc<Shared>>,
    exchange: Exchange,
    host: HostSide,
}

/// What carrying a stream's plans out needs to remember of it.
struct HostSide {
    context_id: u32,
    /// The request header map as read, with every plan's edits applied since: a plan's edits are
    /// one write of the whole map (one host call, not one per header).
    request_headers: Option<HeaderMap>,
    /// Bytes of the request body the host holds, and of the response chunk in hand: what a
    /// body rewrite replaces.
    request_body_size: usize,
    response_body_size: usize,
}

impl Stream {
    pub fn new(context_id: u32, shared: Option<Rc<Shared>>) -> Stream {
        Stream {
            shared,
            exchange: Exchange::new(),
            host: HostSide { context_id, request_headers: None, request_body_size: 0, response_body_size: 0 },
        }
    }
}

impl HostSide {
    #[inline(never)]
    fn log(&self, level: HostLevel, message: &str) {
        log(level, &format!("tokengate[{}]: {message}", self.context_id));
    }

    /// Carries `plan` out: bodies, headers, route cache, stats, filter state, logs, then the
    /// reply (whose plan pauses the stream). `response_headers` is the response map if this
    /// callback read it.
    fn apply(&mut self, shared: &Shared, plan: Plan, mut response_headers: Option<HeaderMap>) -> HostAction {
        if let Some(body) = &plan.request_body {
            if let Err(s) = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, self.request_body_size, body) {
                self.log(HostLevel::Warn, &format!("cannot rewrite the request body: {s:?}"));
            }
        }
        let mut request_headers = self.request_headers.take();
        self.edit(MapType::HttpRequestHeaders, &plan.request_headers, &mut request_headers);
        self.request_headers = request_headers;
        if plan.clear_route_cache {
            if let Err(s) = hostcalls::call_foreign_function("clear_route_cache", None) {
                self.log(HostLevel::Warn, &format!("cannot clear the route cache: {s:?}"));
            }
        }
        self.edit(MapType::HttpResponseHeaders, &plan.response_headers, &mut response_headers);
        if let Some(chunk) = &plan.response_body {
            if let Err(s) = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, self.response_body_size, chunk) {
                self.log(HostLevel::Warn, &format!("cannot rewrite the stream: {s:?}"));
            }
        }
        shared.metrics.apply(&plan.stats);
        for (field, value) in &plan.filter_state {
            if let Err(s) = hostcalls::set_property(vec![field.path()], Some(value.as_bytes())) {
                self.log(HostLevel::Warn, &format!("cannot set filter state {}: {s:?}", field.path()));
            }
        }
        for (level, message) in &plan.logs {
            let level = match level {
                LogLevel::Warn => HostLevel::Warn,
                LogLevel::Error => HostLevel::Error,
            };
            self.log(level, message);
        }
        if let Some(reply) = &plan.reply {
            let headers: Vec<(&str, &str)> = reply.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            if let Err(s) = hostcalls::send_http_response(u32::from(reply.status), headers, Some(reply.body.as_bytes())) {
                self.log(HostLevel::Error, &format!("cannot send the {} reply: {s:?}", reply.status));
            }
        }
        match plan.action {
            Action::Continue => HostAction::Continue,
            Action::Pause => HostAction::Pause,
        }
    }

    /// Edits a header map with one write of the whole map, as read and edited since.
    fn edit(&self, map_type: MapType, edits: &HeaderEdits, map: &mut Option<HeaderMap>) {
        if edits.is_empty() {
            return;
        }
        let Some(map) = map else {
            self.log(HostLevel::Error, "cannot edit headers the host did not give");
            return;
        };
        edits.apply_to(map);
        let pairs: Vec<(&str, &str)> = map.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        if let Err(s) = hostcalls::set_map(map_type, pairs) {
            self.log(HostLevel::Warn, &format!("cannot write the headers: {s:?}"));
        }
    }
}

impl Context for Stream {}

// Each callback borrows the shared state, the stream's gate and its host side apart: the gate
// decides, the host side applies.
impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> HostAction {
        let Some(shared) = &self.shared else {
            self.host.log(HostLevel::Error, "no valid configuration; passing the request on unchecked");
            return HostAction::Continue;
        };
        let headers = match hostcalls::get_map(MapType::HttpRequestHeaders) {
            Ok(headers) => Some(headers),
            Err(s) => {
                self.host.log(HostLevel::Error, &format!("cannot read the request headers: {s:?}"));
                None
            }
        };
        let plan = self.exchange.on_request_headers(&env(shared), headers.as_deref().unwrap_or_default(), end_of_stream);
        self.host.request_headers = headers;
        self.host.apply(shared, plan, None)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> HostAction {
        let Some(shared) = &self.shared else { return HostAction::Continue };
        self.host.request_body_size = body_size;
        let read = |size| read_body(BufferType::HttpRequestBody, size);
        let plan = self.exchange.on_request_body(&env(shared), body_size, end_of_stream, read);
        self.host.apply(shared, plan, None)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> HostAction {
        let Some(shared) = &self.shared else { return HostAction::Continue };
        let read = |size| read_body(BufferType::HttpRequestBody, size);
        let plan = self.exchange.on_request_trailers(&env(shared), read);
        self.host.apply(shared, plan, None)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> HostAction {
        let Some(shared) = &self.shared else { return HostAction::Continue };
        let mut read: Option<HeaderMap> = None;
        let host = &self.host;
        let plan = self.exchange.on_response_headers(&env(shared), end_of_stream, || {
            match hostcalls::get_map(MapType::HttpResponseHeaders) {
                Ok(headers) => read.insert(headers).as_slice(),
                Err(s) => {
                    host.log(HostLevel::Warn, &format!("cannot read the response headers: {s:?}"));
                    &[]
                }
            }
        });
        self.host.apply(shared, plan, read)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> HostAction {
        let Some(shared) = &self.shared else { return HostAction::Continue };
        self.host.response_body_size = body_size;
        let read = |size| read_body(BufferType::HttpResponseBody, size);
        let plan = self.exchange.on_response_body(&env(shared), body_size, end_of_stream, read);
        self.host.apply(shared, plan, None)
    }

    fn on_log(&mut self) {
        if let Some(shared) = &self.shared {
            let plan = self.exchange.on_stream_end(&env(shared));
            self.host.apply(shared, plan, None);
        }
    }
}
