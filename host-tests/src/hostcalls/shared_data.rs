//! Shared data and shared queue hostcalls, shared by every VM of a gateway (Envoy scopes them by
//! vm_id). `set` with a non-zero cas that is stale fails with `CasMismatch`; cas values start at 1.

use std::collections::VecDeque;

use wasmtime::Caller;

use crate::abi::Status;
use crate::hostcalls::imports::Imports;
use crate::memory::{self, status, HostResult};
use crate::state::{HostState, SharedQueue};

pub(crate) fn add_to_linker(imports: &mut Imports<'_>) -> wasmtime::Result<()> {
    imports.func(
        "env",
        "proxy_get_shared_data",
        |mut caller: Caller<'_, HostState>,
         key_ptr: u32,
         key_len: u32,
         ptr_ptr: u32,
         size_ptr: u32,
         cas_ptr: u32| {
            status(get(
                &mut caller,
                key_ptr,
                key_len,
                ptr_ptr,
                size_ptr,
                cas_ptr,
            ))
        },
    )?;
    imports.func(
        "env",
        "proxy_set_shared_data",
        |mut caller: Caller<'_, HostState>,
         key_ptr: u32,
         key_len: u32,
         value_ptr: u32,
         value_len: u32,
         cas: u32| {
            status(set(
                &mut caller,
                key_ptr,
                key_len,
                value_ptr,
                value_len,
                cas,
            ))
        },
    )?;
    imports.func(
        "env",
        "proxy_register_shared_queue",
        |mut caller: Caller<'_, HostState>, name_ptr: u32, name_len: u32, id_ptr: u32| {
            status(register_queue(&mut caller, name_ptr, name_len, id_ptr))
        },
    )?;
    imports.func(
        "env",
        "proxy_resolve_shared_queue",
        |mut caller: Caller<'_, HostState>,
         vm_id_ptr: u32,
         vm_id_len: u32,
         name_ptr: u32,
         name_len: u32,
         id_ptr: u32| {
            status(resolve_queue(
                &mut caller,
                vm_id_ptr,
                vm_id_len,
                name_ptr,
                name_len,
                id_ptr,
            ))
        },
    )?;
    imports.func(
        "env",
        "proxy_enqueue_shared_queue",
        |mut caller: Caller<'_, HostState>, id: u32, value_ptr: u32, value_len: u32| {
            let result = memory::read(&mut caller, value_ptr, value_len).and_then(|value| {
                let mut data = caller.data().shared.data();
                let queue = data.queues.get_mut(id as usize).ok_or(Status::NotFound)?;
                queue.items.push_back(value);
                Ok(())
            });
            status(result)
        },
    )?;
    imports.func(
        "env",
        "proxy_dequeue_shared_queue",
        |mut caller: Caller<'_, HostState>, id: u32, ptr_ptr: u32, size_ptr: u32| {
            let item = {
                let mut data = caller.data().shared.data();
                match data.queues.get_mut(id as usize) {
                    None => Err(Status::NotFound),
                    Some(queue) => queue.items.pop_front().ok_or(Status::Empty),
                }
            };
            status(
                item.map_err(Into::into)
                    .and_then(|item| memory::return_bytes(&mut caller, &item, ptr_ptr, size_ptr)),
            )
        },
    )?;
    Ok(())
}

fn get(
    caller: &mut Caller<'_, HostState>,
    key_ptr: u32,
    key_len: u32,
    ptr_ptr: u32,
    size_ptr: u32,
    cas_ptr: u32,
) -> HostResult {
    let key = memory::read_string(caller, key_ptr, key_len)?;
    memory::check(caller, cas_ptr, 4)?;
    let (value, cas) = caller
        .data()
        .shared
        .data()
        .values
        .get(&key)
        .cloned()
        .ok_or(Status::NotFound)?;
    memory::return_bytes(caller, &value, ptr_ptr, size_ptr)?;
    memory::write_u32(caller, cas_ptr, cas)
}

fn set(
    caller: &mut Caller<'_, HostState>,
    key_ptr: u32,
    key_len: u32,
    value_ptr: u32,
    value_len: u32,
    cas: u32,
) -> HostResult {
    let key = memory::read_string(caller, key_ptr, key_len)?;
    let value = memory::read(caller, value_ptr, value_len)?;
    let mut data = caller.data().shared.data();
    if let Some((_, current)) = data.values.get(&key) {
        if cas != 0 && cas != *current {
            return Err(Status::CasMismatch.into());
        }
    }
    // Envoy accepts any cas for a key that does not exist yet.
    let next = data.next_cas();
    data.values.insert(key, (value, next));
    Ok(())
}

fn register_queue(
    caller: &mut Caller<'_, HostState>,
    name_ptr: u32,
    name_len: u32,
    id_ptr: u32,
) -> HostResult {
    let name = memory::read_string(caller, name_ptr, name_len)?;
    memory::check(caller, id_ptr, 4)?;
    let id = {
        let shared = caller.data().shared.clone();
        let mut data = shared.data();
        match data
            .queues
            .iter()
            .position(|q| q.vm_id == shared.vm_id && q.name == name)
        {
            Some(id) => id,
            None => {
                data.queues.push(SharedQueue {
                    vm_id: shared.vm_id.clone(),
                    name,
                    items: VecDeque::new(),
                });
                data.queues.len() - 1
            }
        }
    };
    memory::write_u32(caller, id_ptr, id as u32)
}

fn resolve_queue(
    caller: &mut Caller<'_, HostState>,
    vm_id_ptr: u32,
    vm_id_len: u32,
    name_ptr: u32,
    name_len: u32,
    id_ptr: u32,
) -> HostResult {
    let vm_id = memory::read_string(caller, vm_id_ptr, vm_id_len)?;
    let name = memory::read_string(caller, name_ptr, name_len)?;
    let id = caller
        .data()
        .shared
        .data()
        .queues
        .iter()
        .position(|q| q.vm_id == vm_id && q.name == name)
        .ok_or(Status::NotFound)?;
    memory::write_u32(caller, id_ptr, id as u32)
}
