//! How a gateway is made: `GatewayBuilder` settings (plugin, configs, VMs, clock, properties,
//! limits), then every VM instantiated and started as Envoy starts them.

use std::sync::Arc;

use crate::abi::LogLevel;
use crate::clock::Clock;
use crate::error::Result;
use crate::plugin::Plugin;
use crate::state::{HostState, Shared};
use crate::vm::Vm;

use super::exchange::Gateway;

/// Envoy's default `per_connection_buffer_limit_bytes`.
pub const ENVOY_BUFFER_LIMIT: usize = 1024 * 1024;

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

impl Gateway {
    /// The real filter with this plugin configuration, one VM.
    pub fn new(config: &str) -> Result<Gateway> {
        Gateway::builder().config(config).build()
    }

    /// The real filter with this plugin configuration, `vms` VMs sharing stats and shared data.
    pub fn with_vms(config: &str, vms: usize) -> Result<Gateway> {
        Gateway::builder().config(config).vms(vms).build()
    }

    /// Settings to change before `build`: the real filter, one VM, a manual clock, Envoy's limits.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }
}
