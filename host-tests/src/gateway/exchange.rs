//! The gateway and how streams go through it: a request, its response, a whole exchange, a
//! stream ended early, and the outcome tests read back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::flow::{self, Direction};
use crate::outcome::{Decision, Outcome, StreamId};
use crate::plugin::Plugin;
use crate::state::Shared;
use crate::vm::Vm;

use super::message::{Request, Response};

/// One or more VMs of a plugin behind a pretend Envoy.
pub struct Gateway {
    pub(super) plugin: Plugin,
    pub(super) shared: Arc<Shared>,
    pub(super) vms: Vec<Vm>,
    pub(super) next_vm: usize,
    /// When each VM's next `on_tick` is due (nanoseconds), if it asked for ticks.
    pub(super) next_tick: Vec<Option<u64>>,
}

impl Gateway {
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
        if outcome.finished || outcome.decision != Decision::Forwarded {
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

    pub(super) fn vm_mut(&mut self, index: usize) -> Result<&mut Vm> {
        let count = self.vms.len();
        self.vms
            .get_mut(index)
            .ok_or_else(|| Error::Usage(format!("no vm {index}: the gateway has {count}")))
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
