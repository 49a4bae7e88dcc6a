//! Time in a gateway: the shared clock, and moving it on so that ticks fire and callout answers
//! arrive in time order, as Envoy's dispatcher would deliver them.

use std::time::Duration;

use crate::clock::Clock;
use crate::error::Result;
use crate::flow;

use super::exchange::Gateway;

impl Gateway {
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

    pub(super) fn schedule_ticks(&mut self) {
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
}
