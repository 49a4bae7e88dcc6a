//! The one door every hostcall goes through: `Imports::func` registers it with the linker wrapped
//! in a counter bump, so each call the guest makes into the host is counted exactly once, by
//! import, before the hostcall runs. Hostcall modules get an `Imports`, never the `Linker`.

use wasmtime::{Caller, Linker, WasmRet, WasmTy};

use crate::host_calls::ImportNames;
use crate::state::HostState;

/// A linker being filled with counted hostcalls.
pub(crate) struct Imports<'a> {
    linker: &'a mut Linker<HostState>,
    names: Vec<&'static str>,
}

impl<'a> Imports<'a> {
    pub(crate) fn new(linker: &'a mut Linker<HostState>) -> Imports<'a> {
        Imports {
            linker,
            names: Vec::new(),
        }
    }

    /// Registers `hostcall` as `module::name`. Names are unique across modules (WASI's never
    /// start with `proxy_`), so a count by name is unambiguous.
    pub(crate) fn func<Params, Results>(
        &mut self,
        module: &'static str,
        name: &'static str,
        hostcall: impl Hostcall<Params, Results>,
    ) -> wasmtime::Result<()> {
        if self.names.contains(&name) {
            wasmtime::bail!("import {name} registered twice");
        }
        let index = self.names.len();
        self.names.push(name);
        hostcall.register(self.linker, module, name, index)
    }

    /// The names, once every hostcall is registered.
    pub(crate) fn names(self) -> ImportNames {
        self.names.into()
    }
}

/// A host function of any arity that takes the `Caller` first, as `Linker::func_wrap` accepts.
pub(crate) trait Hostcall<Params, Results>: Send + Sync + 'static {
    /// Registers the function wrapped so that each call first bumps counter `index`.
    fn register(
        self,
        linker: &mut Linker<HostState>,
        module: &str,
        name: &str,
        index: usize,
    ) -> wasmtime::Result<()>;
}

macro_rules! hostcall {
    ($($arg:ident)*) => {
        #[allow(non_snake_case, reason = "the type parameters name the arguments")]
        impl<F, $($arg,)* R> Hostcall<($($arg,)*), R> for F
        where
            F: Fn(Caller<'_, HostState>, $($arg),*) -> R + Send + Sync + 'static,
            $($arg: WasmTy,)*
            R: WasmRet,
        {
            fn register(
                self,
                linker: &mut Linker<HostState>,
                module: &str,
                name: &str,
                index: usize,
            ) -> wasmtime::Result<()> {
                linker.func_wrap(
                    module,
                    name,
                    move |mut caller: Caller<'_, HostState>, $($arg: $arg),*| -> R {
                        caller.data_mut().host_calls.count(index);
                        self(caller, $($arg),*)
                    },
                )?;
                Ok(())
            }
        }
    };
}

// Every arity the proxy-wasm 0.2.1 and WASI imports use (`proxy_grpc_call` has 12).
hostcall!();
hostcall!(A1);
hostcall!(A1 A2);
hostcall!(A1 A2 A3);
hostcall!(A1 A2 A3 A4);
hostcall!(A1 A2 A3 A4 A5);
hostcall!(A1 A2 A3 A4 A5 A6);
hostcall!(A1 A2 A3 A4 A5 A6 A7);
hostcall!(A1 A2 A3 A4 A5 A6 A7 A8);
hostcall!(A1 A2 A3 A4 A5 A6 A7 A8 A9);
hostcall!(A1 A2 A3 A4 A5 A6 A7 A8 A9 A10);
hostcall!(A1 A2 A3 A4 A5 A6 A7 A8 A9 A10 A11);
hostcall!(A1 A2 A3 A4 A5 A6 A7 A8 A9 A10 A11 A12);
