//! Errors of the harness, each saying what happened in the guest or what to do.

use std::fmt;
use std::path::PathBuf;

/// Why loading, configuring or driving a VM failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The .wasm file is not there.
    WasmMissing { path: PathBuf, build: &'static str },
    /// The module did not compile, imports something this host lacks, or is not proxy-wasm.
    Load(String),
    /// The guest trapped (a Rust panic ends as `unreachable`, after writing its message to stderr).
    Trap {
        vm: usize,
        callback: String,
        message: String,
        stderr: String,
    },
    /// `proxy_on_configure` returned false: Envoy rejects the config.
    ConfigRejected { vm: usize, logs: Vec<String> },
    /// `proxy_on_vm_start` returned false.
    VmStartRejected { vm: usize, logs: Vec<String> },
    /// The VM trapped earlier; like Envoy, the harness does not call into it again.
    VmFailed { vm: usize },
    /// The test asked for something the harness cannot do (unknown stream, VM out of range...).
    Usage(String),
}

impl Error {
    /// The trap message, when this is a trap.
    pub fn trap_message(&self) -> Option<&str> {
        match self {
            Error::Trap { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The log lines of a rejected config.
    pub fn rejection_logs(&self) -> Option<&[String]> {
        match self {
            Error::ConfigRejected { logs, .. } | Error::VmStartRejected { logs, .. } => Some(logs),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::WasmMissing { path, build } => {
                write!(
                    f,
                    "{} does not exist; build it first: {build}",
                    path.display()
                )
            }
            Error::Load(message) => write!(f, "cannot load the module: {message}"),
            Error::Trap {
                vm,
                callback,
                message,
                stderr,
            } => {
                write!(f, "guest trapped in {callback} (vm {vm}): {message}")?;
                if !stderr.is_empty() {
                    write!(f, "\nguest stderr:\n{}", stderr.trim_end())?;
                }
                Ok(())
            }
            Error::ConfigRejected { vm, logs } => {
                write!(
                    f,
                    "plugin configuration rejected (vm {vm}; proxy_on_configure returned false)"
                )?;
                logs.iter().try_for_each(|line| write!(f, "\n  {line}"))
            }
            Error::VmStartRejected { vm, logs } => {
                write!(
                    f,
                    "VM start rejected (vm {vm}; proxy_on_vm_start returned false)"
                )?;
                logs.iter().try_for_each(|line| write!(f, "\n  {line}"))
            }
            Error::VmFailed { vm } => write!(f, "vm {vm} trapped earlier and is no longer called"),
            Error::Usage(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The guest called `proc_exit`; its call ends in a trap that carries this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestExit(pub i32);

impl fmt::Display for GuestExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "guest called proc_exit({})", self.0)
    }
}

impl std::error::Error for GuestExit {}
