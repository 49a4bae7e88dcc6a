//! One VM: a wasmtime instance of the plugin in its own store, and the exported proxy-wasm callbacks
//! called the way Envoy calls them (the effective context set first, traps turned into errors).

use wasmtime::{Instance, Store, TypedFunc, WasmParams, WasmResults};

use crate::abi::Action;
use crate::calls::{Delivery, GrpcDelivery};
use crate::error::{Error, GuestExit, Result};
use crate::host_calls::{HostCalls, ImportNames};
use crate::plugin::Plugin;
use crate::state::{GuestExports, HostState, Stream};

/// `proxy_on_http_call_response(context, token, headers, body size, trailers)`.
type HttpCallResponse = TypedFunc<(u32, u32, u32, u32, u32), ()>;

/// The exported callbacks, looked up once.
struct Exports {
    context_create: Option<TypedFunc<(u32, u32), ()>>,
    vm_start: Option<TypedFunc<(u32, u32), u32>>,
    configure: Option<TypedFunc<(u32, u32), u32>>,
    /// `proxy_on_{request,response}_{headers,body}`: (context, count or size, end_of_stream).
    request_headers: Option<TypedFunc<(u32, u32, u32), u32>>,
    request_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    request_trailers: Option<TypedFunc<(u32, u32), u32>>,
    response_headers: Option<TypedFunc<(u32, u32, u32), u32>>,
    response_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    response_trailers: Option<TypedFunc<(u32, u32), u32>>,
    done: Option<TypedFunc<u32, u32>>,
    log: Option<TypedFunc<u32, ()>>,
    delete: Option<TypedFunc<u32, ()>>,
    tick: Option<TypedFunc<u32, ()>>,
    http_call_response: Option<HttpCallResponse>,
    grpc_receive: Option<TypedFunc<(u32, u32, u32), ()>>,
    grpc_close: Option<TypedFunc<(u32, u32, u32), ()>>,
}

/// Which stream callback to call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamCallback {
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
}

impl StreamCallback {
    pub(crate) fn name(self) -> &'static str {
        match self {
            StreamCallback::RequestHeaders => "proxy_on_request_headers",
            StreamCallback::RequestBody => "proxy_on_request_body",
            StreamCallback::RequestTrailers => "proxy_on_request_trailers",
            StreamCallback::ResponseHeaders => "proxy_on_response_headers",
            StreamCallback::ResponseBody => "proxy_on_response_body",
            StreamCallback::ResponseTrailers => "proxy_on_response_trailers",
        }
    }
}

/// A running instance of the plugin with its own store.
pub struct Vm {
    store: Store<HostState>,
    instance: Instance,
    exports: Exports,
    failed: bool,
    next_context_id: u32,
    /// The name of each host-call counter (the plugin's linker order).
    import_names: ImportNames,
}

impl Vm {
    /// Instantiates the plugin and runs its initialiser (`_initialize`, else `_start`).
    pub(crate) fn new(plugin: &Plugin, state: HostState) -> Result<Vm> {
        let mut store = Store::new(plugin.engine(), state);
        let instance = plugin
            .instance_pre()
            .instantiate(&mut store)
            .map_err(|e| Error::Load(format!("{e:#}")))?;
        let memory = instance.get_memory(&mut store, "memory");
        let allocate = ["proxy_on_memory_allocate", "malloc"]
            .iter()
            .find_map(|name| instance.get_typed_func::<u32, u32>(&mut store, name).ok());
        store.data_mut().guest = memory.map(|memory| GuestExports { memory, allocate });
        let exports = Exports {
            context_create: typed(&mut store, &instance, "proxy_on_context_create")?,
            vm_start: typed(&mut store, &instance, "proxy_on_vm_start")?,
            configure: typed(&mut store, &instance, "proxy_on_configure")?,
            request_headers: typed(&mut store, &instance, "proxy_on_request_headers")?,
            request_body: typed(&mut store, &instance, "proxy_on_request_body")?,
            request_trailers: typed(&mut store, &instance, "proxy_on_request_trailers")?,
            response_headers: typed(&mut store, &instance, "proxy_on_response_headers")?,
            response_body: typed(&mut store, &instance, "proxy_on_response_body")?,
            response_trailers: typed(&mut store, &instance, "proxy_on_response_trailers")?,
            done: typed(&mut store, &instance, "proxy_on_done")?,
            log: typed(&mut store, &instance, "proxy_on_log")?,
            delete: typed(&mut store, &instance, "proxy_on_delete")?,
            tick: typed(&mut store, &instance, "proxy_on_tick")?,
            http_call_response: typed(&mut store, &instance, "proxy_on_http_call_response")?,
            grpc_receive: typed(&mut store, &instance, "proxy_on_grpc_receive")?,
            grpc_close: typed(&mut store, &instance, "proxy_on_grpc_close")?,
        };
        let root = store.data().root_context_id;
        let mut vm = Vm {
            store,
            instance,
            exports,
            failed: false,
            next_context_id: root + 1,
            import_names: plugin.import_names().clone(),
        };
        for name in ["_initialize", "_start"] {
            if let Ok(init) = vm.instance.get_typed_func::<(), ()>(&mut vm.store, name) {
                vm.invoke(name, 0, Some(init), ())?;
                break;
            }
        }
        Ok(vm)
    }

    /// Envoy's start sequence: root context, `on_vm_start`, `on_configure`.
    pub(crate) fn start(&mut self) -> Result<()> {
        let root = self.root_context_id();
        let (vm_config, plugin_config) = {
            let state = self.store.data();
            (
                state.vm_configuration.len() as u32,
                state.plugin_configuration.len() as u32,
            )
        };
        self.invoke(
            "proxy_on_context_create",
            root,
            self.exports.context_create.clone(),
            (root, 0),
        )?;
        if self.invoke(
            "proxy_on_vm_start",
            root,
            self.exports.vm_start.clone(),
            (root, vm_config),
        )? == Some(0)
        {
            return Err(Error::VmStartRejected {
                vm: self.index(),
                logs: self.log_messages(),
            });
        }
        if self.invoke(
            "proxy_on_configure",
            root,
            self.exports.configure.clone(),
            (root, plugin_config),
        )? == Some(0)
        {
            return Err(Error::ConfigRejected {
                vm: self.index(),
                logs: self.log_messages(),
            });
        }
        Ok(())
    }

    /// This VM's index in its gateway.
    pub fn index(&self) -> usize {
        self.store.data().vm
    }

    pub fn root_context_id(&self) -> u32 {
        self.store.data().root_context_id
    }

    pub(crate) fn state(&self) -> &HostState {
        self.store.data()
    }

    pub(crate) fn state_mut(&mut self) -> &mut HostState {
        self.store.data_mut()
    }

    /// What the guest wrote to stdout.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.store.data().stdout).into_owned()
    }

    /// What the guest wrote to stderr (a Rust panic message lands here).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.store.data().stderr).into_owned()
    }

    fn log_messages(&self) -> Vec<String> {
        let vm = self.index();
        self.store
            .data()
            .shared
            .logs()
            .iter()
            .filter(|l| l.vm == vm)
            .map(|l| format!("{}: {}", l.level, l.message))
            .collect()
    }

    /// Calls an exported function by name, with the root context current (for harness tests).
    pub fn call<P: WasmParams, R: WasmResults>(&mut self, name: &str, args: P) -> Result<R> {
        let func = self
            .instance
            .get_typed_func::<P, R>(&mut self.store, name)
            .map_err(|e| Error::Usage(format!("no export {name} of that type: {e:#}")))?;
        let root = self.root_context_id();
        self.invoke(name, root, Some(func), args)?
            .ok_or_else(|| Error::Usage(format!("{name} did not run")))
    }

    /// Reads guest memory (for harness tests).
    pub fn read_memory(&mut self, ptr: u32, len: u32) -> Option<Vec<u8>> {
        let memory = self.store.data().guest.as_ref()?.memory;
        memory
            .data(&self.store)
            .get(ptr as usize..ptr as usize + len as usize)
            .map(<[u8]>::to_vec)
    }

    /// Writes guest memory (for harness tests).
    pub fn write_memory(&mut self, ptr: u32, bytes: &[u8]) -> Option<()> {
        let memory = self.store.data().guest.as_ref()?.memory;
        memory
            .data_mut(&mut self.store)
            .get_mut(ptr as usize..ptr as usize + bytes.len())?
            .copy_from_slice(bytes);
        Some(())
    }

    /// Calls `func` with `context` current. A missing export returns `None` (Envoy skips it).
    fn invoke<P: WasmParams, R: WasmResults>(
        &mut self,
        callback: &str,
        context: u32,
        func: Option<TypedFunc<P, R>>,
        args: P,
    ) -> Result<Option<R>> {
        if self.failed {
            return Err(Error::VmFailed { vm: self.index() });
        }
        let Some(func) = func else { return Ok(None) };
        self.store.data_mut().current_context = context;
        let result = func.call(&mut self.store, args);
        self.settle_host_calls(context);
        match result {
            Ok(result) => Ok(Some(result)),
            Err(error) => {
                self.failed = true;
                let message = match (
                    error.downcast_ref::<wasmtime::Trap>(),
                    error.downcast_ref::<GuestExit>(),
                ) {
                    (Some(trap), _) => format!("wasm trap: {trap}"),
                    (None, Some(exit)) => exit.to_string(),
                    (None, None) => format!("{error:#}"),
                };
                Err(Error::Trap {
                    vm: self.index(),
                    callback: callback.to_string(),
                    message,
                    stderr: self.stderr(),
                })
            }
        }
    }

    /// Moves the host calls of the callback that just returned to the context it ran for: a
    /// stream's request side until its response has started, then its response side; any other
    /// context is the root's.
    fn settle_host_calls(&mut self, context: u32) {
        let state = self.store.data_mut();
        let total = match state.streams.get_mut(&context) {
            Some(stream) if stream.response.started => &mut stream.host_calls.response,
            Some(stream) => &mut stream.host_calls.request,
            None => &mut state.root_host_calls,
        };
        total.take_from(&mut state.host_calls);
    }

    /// Host calls made in callbacks on contexts other than streams: the initialiser, the start
    /// sequence, ticks, callout answers to the root, `Vm::call`.
    pub fn root_host_calls(&self) -> HostCalls {
        self.store.data().root_host_calls.named(&self.import_names)
    }

    pub(crate) fn import_names(&self) -> &[&'static str] {
        &self.import_names
    }

    /// Creates an HTTP context for a new stream (`proxy_on_context_create(ctx, root)`).
    pub(crate) fn create_stream(&mut self, log_start: usize) -> Result<u32> {
        let context = self.next_context_id;
        self.next_context_id += 1;
        let root = self.root_context_id();
        self.store.data_mut().streams.insert(
            context,
            Stream {
                log_start,
                ..Stream::default()
            },
        );
        self.invoke(
            "proxy_on_context_create",
            context,
            self.exports.context_create.clone(),
            (context, root),
        )?;
        Ok(context)
    }

    /// Calls a headers or body callback: `(count or size, end_of_stream)`.
    pub(crate) fn stream_callback(
        &mut self,
        callback: StreamCallback,
        context: u32,
        size: u32,
        end_of_stream: bool,
    ) -> Result<Action> {
        let e = &self.exports;
        let (with_eos, trailers) = match callback {
            StreamCallback::RequestHeaders => (e.request_headers.clone(), None),
            StreamCallback::RequestBody => (e.request_body.clone(), None),
            StreamCallback::ResponseHeaders => (e.response_headers.clone(), None),
            StreamCallback::ResponseBody => (e.response_body.clone(), None),
            StreamCallback::RequestTrailers => (None, Some(e.request_trailers.clone())),
            StreamCallback::ResponseTrailers => (None, Some(e.response_trailers.clone())),
        };
        let result = match trailers {
            // Trailer callbacks take no end_of_stream: trailers always end the stream.
            Some(f) => self.invoke(callback.name(), context, f, (context, size))?,
            None => {
                let args = (context, size, u32::from(end_of_stream));
                self.invoke(callback.name(), context, with_eos, args)?
            }
        };
        Ok(result.map_or(Action::Continue, Action::from_code))
    }

    /// Ends a stream the way Envoy does: `on_done`, `on_log`, `on_delete`.
    pub(crate) fn finish_stream(&mut self, context: u32) -> Result<()> {
        let already = self
            .store
            .data()
            .streams
            .get(&context)
            .is_none_or(|s| s.finished);
        if already {
            return Ok(());
        }
        if let Some(stream) = self.store.data_mut().streams.get_mut(&context) {
            stream.finished = true;
        }
        self.invoke("proxy_on_done", context, self.exports.done.clone(), context)?;
        self.invoke("proxy_on_log", context, self.exports.log.clone(), context)?;
        self.invoke(
            "proxy_on_delete",
            context,
            self.exports.delete.clone(),
            context,
        )?;
        Ok(())
    }

    /// Calls `proxy_on_tick` on the root context.
    pub(crate) fn tick(&mut self) -> Result<()> {
        let root = self.root_context_id();
        self.invoke("proxy_on_tick", root, self.exports.tick.clone(), root)?;
        Ok(())
    }

    /// Delivers every callout answer due by now; returns the contexts that got one.
    pub(crate) fn deliver_due_callouts(&mut self) -> Result<Vec<u32>> {
        let mut touched = Vec::new();
        loop {
            let now = self.store.data().shared.clock.now_nanos();
            let pending = &mut self.store.data_mut().pending_callouts;
            let Some(next) = pending
                .iter()
                .enumerate()
                .filter(|(_, p)| p.due_nanos <= now)
                .min_by_key(|(_, p)| (p.due_nanos, p.token))
                .map(|(i, _)| i)
            else {
                return Ok(touched);
            };
            let callout = pending.remove(next);
            let context = callout.context_id;
            match callout.delivery {
                Delivery::Http(response) => {
                    let counts = (
                        response.headers.len() as u32,
                        response.body.len() as u32,
                        response.trailers.len() as u32,
                    );
                    self.store.data_mut().call_response = Some(response);
                    let f = self.exports.http_call_response.clone();
                    let result = self.invoke(
                        "proxy_on_http_call_response",
                        context,
                        f,
                        (context, callout.token, counts.0, counts.1, counts.2),
                    );
                    self.store.data_mut().call_response = None;
                    result?;
                }
                Delivery::GrpcMessage(message) => {
                    let size = message.len() as u32;
                    self.store.data_mut().grpc_delivery = Some(GrpcDelivery {
                        message,
                        ..GrpcDelivery::default()
                    });
                    let f = self.exports.grpc_receive.clone();
                    let result = self.invoke(
                        "proxy_on_grpc_receive",
                        context,
                        f,
                        (context, callout.token, size),
                    );
                    self.store.data_mut().grpc_delivery = None;
                    result?;
                }
                Delivery::GrpcClose { code, message } => {
                    self.store.data_mut().grpc_delivery = Some(GrpcDelivery {
                        message: Vec::new(),
                        status_code: code,
                        status_message: message,
                    });
                    let f = self.exports.grpc_close.clone();
                    let result = self.invoke(
                        "proxy_on_grpc_close",
                        context,
                        f,
                        (context, callout.token, code),
                    );
                    self.store.data_mut().grpc_delivery = None;
                    result?;
                }
            }
            touched.push(context);
        }
    }

    /// The open streams' context ids, in order.
    pub(crate) fn stream_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.store.data().streams.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub(crate) fn stream(&self, context: u32) -> Option<&Stream> {
        self.store.data().streams.get(&context)
    }

    pub(crate) fn stream_mut(&mut self, context: u32) -> Option<&mut Stream> {
        self.store.data_mut().streams.get_mut(&context)
    }
}

/// An optional export of the expected type; a wrong type is a load error, not a silent skip.
fn typed<P: WasmParams, R: WasmResults>(
    store: &mut Store<HostState>,
    instance: &Instance,
    name: &str,
) -> Result<Option<TypedFunc<P, R>>> {
    match instance.get_func(&mut *store, name) {
        None => Ok(None),
        Some(func) => func
            .typed::<P, R>(&*store)
            .map(Some)
            .map_err(|e| Error::Load(format!("export {name} has the wrong signature: {e:#}"))),
    }
}
