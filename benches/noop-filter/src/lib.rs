//! No-op filter for load comparisons: buffers the request body, parses it as JSON, adds
//! `x-noop-parsed: 1` (or `0` when it is not JSON) and lets the request through.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let parsed = proxy_wasm::hostcalls::get_buffer(proxy_wasm::types::BufferType::HttpRequestBody, 0, body_size)
            .ok()
            .flatten()
            .is_some_and(|b| serde_json::from_slice::<serde_json::Value>(&b).is_ok());
        let _ = proxy_wasm::hostcalls::add_map_value(
            proxy_wasm::types::MapType::HttpRequestHeaders,
            "x-noop-parsed",
            if parsed { "1" } else { "0" },
        );
        Action::Continue
    }
}
