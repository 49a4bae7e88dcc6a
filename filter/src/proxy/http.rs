//! One HTTP stream on the host: reads what the gate asks for, hands it to the stream's
//! [`Exchange`], and carries out the plan that comes back with as few host calls as it allows.

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action as HostAction, BufferType, LogLevel as HostLevel, MapType};

use super::store::SharedData;
use super::{log, Shared};
use crate::gate::{Action, Call, Clock, Env, Exchange, HeaderEdits, LogLevel, Plan};
use crate::rls::{self, Failure};

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
    Env { config: &shared.config, store: &SharedData, clock: &HostClock, drift_log: &shared.drift_log, rls_log: &shared.rls_log }
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
    /// The VM's root context: it owns this stream's rate limit service calls.
    root_context_id: u32,
    /// The admission call the stream waits for.
    rls_token: Option<u32>,
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
    pub fn new(context_id: u32, root_context_id: u32, shared: Option<Rc<Shared>>) -> Stream {
        Stream {
            shared,
            exchange: Exchange::new(),
            host: HostSide { context_id, request_headers: None, request_body_size: 0, response_body_size: 0 },
            root_context_id,
            rls_token: None,
        }
    }

    /// Carries `plan` out, then sends its rate limit service call. An admission call that cannot
    /// be sent is answered at once as a failure (`failure_mode` decides).
    fn carry_out(&mut self, shared: &Shared, mut plan: Plan, response_headers: Option<HeaderMap>) -> HostAction {
        let call = plan.call.take();
        let action = self.host.apply(shared, plan, response_headers);
        let Some(call) = call else { return action };
        match self.dispatch(shared, &call) {
            Ok(token) if call.awaited => self.rls_token = Some(token),
            Ok(_) => {}
            Err(why) if call.awaited => {
                let plan = self.exchange.on_rls_answer(&env(shared), Err(Failure::NotSent(why)));
                return self.host.apply(shared, plan, None);
            }
            Err(why) => {
                let plan = self.exchange.on_settlement_unsent(&env(shared), &why);
                self.host.apply(shared, plan, None);
            }
        }
        action
    }

    /// Sends `call` on behalf of the root context. Envoy cancels a stream's calls when the
    /// stream is destroyed, which would lose a settlement sent as the response ends, and would
    /// leave the SDK's record of an admission call whose client left; the root's calls always
    /// end (answer or timeout). While the stream lives, the SDK still hands it the answer.
    fn dispatch(&self, shared: &Shared, call: &Call) -> Result<u32, String> {
        let Some(rls) = shared.config.quota.as_ref().and_then(|q| q.rls.as_ref()) else {
            return Err("no rate limit service configured".to_owned());
        };
        hostcalls::set_effective_context(self.root_context_id).map_err(|s| format!("cannot act for the root context: {s:?}"))?;
        let sent = hostcalls::dispatch_grpc_call(
            &rls.cluster,
            rls::SERVICE,
            rls::METHOD,
            Vec::new(),
            Some(&call.message),
            Duration::from_millis(u64::from(rls.timeout_ms)),
        );
        let _ = hostcalls::set_effective_context(self.host.context_id);
        sent.map_err(|s| match s {
            proxy_wasm::types::Status::ParseFailure => format!("Envoy has no cluster named {:?}", rls.cluster),
            other => format!("{other:?}"),
        })
    }
}

/// The status of the gRPC call being answered: its code and message. Read through the raw
/// import: the SDK's reader panics on a message that is not UTF-8.
fn grpc_status_message() -> String {
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_status(code: *mut u32, data: *mut *mut u8, size: *mut usize) -> u32;
    }
    let (mut code, mut data, mut size) = (0u32, std::ptr::null_mut::<u8>(), 0usize);
    // SAFETY: the host writes the three outputs; `data` is then a buffer of `size` bytes it
    // allocated through the module's allocator, owned by us from here.
    let status = unsafe { proxy_get_status(&mut code, &mut data, &mut size) };
    if status != 0 || data.is_null() {
        return String::new();
    }
    let bytes = unsafe { Vec::from_raw_parts(data, size, size) };
    String::from_utf8_lossy(&bytes).into_owned()
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

impl Context for Stream {
    /// The rate limit service answered (or the call failed or timed out): only the admission
    /// call the stream waits for matters; a settlement's answer changes nothing.
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        if self.rls_token != Some(token_id) {
            return;
        }
        self.rls_token = None;
        let Some(shared) = self.shared.clone() else { return };
        let message;
        let answer = if status_code == 0 {
            match hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, response_size) {
                Ok(bytes) => {
                    message = bytes.unwrap_or_default();
                    Ok(message.as_slice())
                }
                Err(s) => Err(Failure::Unreadable(format!("cannot read the answer: {s:?}"))),
            }
        } else {
            Err(Failure::Status { code: status_code, message: grpc_status_message() })
        };
        let plan = self.exchange.on_rls_answer(&env(&shared), answer);
        if self.host.apply(&shared, plan, None) == HostAction::Continue {
            if let Err(s) = hostcalls::resume_http_request() {
                self.host.log(HostLevel::Error, &format!("cannot resume the request: {s:?}"));
            }
        }
    }
}

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
        let Some(shared) = self.shared.clone() else { return HostAction::Continue };
        self.host.request_body_size = body_size;
        let read = |size| read_body(BufferType::HttpRequestBody, size);
        let plan = self.exchange.on_request_body(&env(&shared), body_size, end_of_stream, read);
        self.carry_out(&shared, plan, None)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> HostAction {
        let Some(shared) = self.shared.clone() else { return HostAction::Continue };
        let read = |size| read_body(BufferType::HttpRequestBody, size);
        let plan = self.exchange.on_request_trailers(&env(&shared), read);
        self.carry_out(&shared, plan, None)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> HostAction {
        let Some(shared) = self.shared.clone() else { return HostAction::Continue };
        let mut read: Option<HeaderMap> = None;
        let host = &self.host;
        let plan = self.exchange.on_response_headers(&env(&shared), end_of_stream, || {
            match hostcalls::get_map(MapType::HttpResponseHeaders) {
                Ok(headers) => read.insert(headers).as_slice(),
                Err(s) => {
                    host.log(HostLevel::Warn, &format!("cannot read the response headers: {s:?}"));
                    &[]
                }
            }
        });
        self.carry_out(&shared, plan, read)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> HostAction {
        let Some(shared) = self.shared.clone() else { return HostAction::Continue };
        self.host.response_body_size = body_size;
        let read = |size| read_body(BufferType::HttpResponseBody, size);
        let plan = self.exchange.on_response_body(&env(&shared), body_size, end_of_stream, read);
        self.carry_out(&shared, plan, None)
    }

    fn on_log(&mut self) {
        if let Some(shared) = self.shared.clone() {
            let plan = self.exchange.on_stream_end(&env(&shared));
            self.carry_out(&shared, plan, None);
        }
    }
}
