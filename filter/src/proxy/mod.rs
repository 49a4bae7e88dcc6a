//! The only code that touches proxy-wasm: the root context (config and metrics, once per VM) and
//! the HTTP context that carries out the gate's plans.

mod http;
mod metrics;
mod store;

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use crate::config::Config;
use crate::gate::LogThrottle;
use http::Stream;
use metrics::Metrics;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> { Box::new(Root { context_id, shared: None }) });
}}

/// What every HTTP context of a VM shares once the configuration is accepted.
pub(crate) struct Shared {
    pub config: Config,
    pub metrics: Metrics,
    pub drift_log: LogThrottle,
    pub rls_log: LogThrottle,
}

struct Root {
    context_id: u32,
    shared: Option<Rc<Shared>>,
}

impl Root {
    fn configure(&self, size: usize) -> Result<Shared, String> {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .map_err(|s| format!("cannot read the plugin configuration: {s:?}"))?
            .unwrap_or_default();
        let config = Config::from_json(&bytes).map_err(|e| e.to_string())?;
        // `other` and the operator's rules get their series now; built-in rules' on first use.
        let metrics = Metrics::define(&config.labels, 1 + config.operator_labels).map_err(|s| format!("cannot define metrics: {s:?}"))?;
        Ok(Shared { config, metrics, drift_log: LogThrottle::default(), rls_log: LogThrottle::default() })
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        match self.configure(plugin_configuration_size) {
            Ok(shared) => {
                // Swap only a configuration that validated; a rejected update keeps nothing stale.
                self.shared = Some(Rc::new(shared));
                true
            }
            Err(reason) => {
                log(LogLevel::Error, &format!("tokengate: {reason}"));
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream::new(context_id, self.context_id, self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Logs through the host; a failing log call has nowhere better to go.
pub(crate) fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}
