//! Commands of our own in DPDK's telemetry (`rte_telemetry`), next to DPDK's `/ethdev/...`, so the
//! stock `dpdk-telemetry.py` shows them.
//!
//! DPDK calls a command's callback on its telemetry thread, with no context pointer. The callback
//! here hands the request to whoever [`connect`]ed a channel (the appliance's control thread, which
//! can reach the cores) and waits for the answer, at most two seconds.

use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use super::{DpdkError, Eal, Errno};

/// A value in a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    U64(u64),
    Str(String),
}

/// What a command answers: a dict, or a list (DPDK's telemetry nests no deeper than that).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Dict(Vec<(String, Value)>),
    List(Vec<Value>),
}

/// A command as the telemetry thread received it.
#[derive(Debug)]
pub struct Request {
    /// The command, e.g. `/switchyard/listener`.
    pub cmd: String,
    /// What followed the comma, if anything.
    pub params: String,
    /// `None`: bad parameters.
    pub reply: mpsc::Sender<Option<Reply>>,
}

static SINK: Mutex<Option<mpsc::Sender<Request>>> = Mutex::new(None);

/// Registers `cmds` (name, help) with DPDK's telemetry. Names start with `/` and use letters,
/// digits, `_` and `/`. A command already registered (an earlier run in this process) is kept.
pub fn register(_eal: &Eal, cmds: &[(&str, &str)]) -> Result<(), DpdkError> {
    for (cmd, help) in cmds {
        let c = CString::new(*cmd).map_err(|_| DpdkError::NulInArgument((*cmd).to_owned()))?;
        let h = CString::new(*help).map_err(|_| DpdkError::NulInArgument((*help).to_owned()))?;
        // SAFETY: both strings are NUL-terminated; DPDK copies them; the callback is a plain
        // extern "C" function that lives as long as the process.
        let r = unsafe { dpdk_sys::rte_telemetry_register_cmd(c.as_ptr(), Some(callback), h.as_ptr()) };
        if r < 0 && r != -libc::EINVAL {
            return Err(DpdkError::Telemetry { cmd: (*cmd).to_owned(), errno: Errno(-r) });
        }
    }
    Ok(())
}

/// Sends the registered commands' requests to `to` from now on.
pub fn connect(to: mpsc::Sender<Request>) {
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = Some(to);
}

/// Stops sending requests: the commands answer with an error until [`connect`] again.
pub fn disconnect() {
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: DPDK passes NUL-terminated strings valid for the callback's duration.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A telemetry name: letters, digits, `_` and `/` only (DPDK rejects the rest).
fn name(s: &str) -> CString {
    let clean: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '/' { c } else { '_' }).collect();
    CString::new(clean).expect("no NUL left")
}

/// A string value, within DPDK's length limit.
fn value(s: &str) -> CString {
    let max = dpdk_sys::RTE_TEL_MAX_STRING_LEN as usize - 1;
    let mut s: String = s.chars().filter(|c| *c != '\0').collect();
    while s.len() > max {
        s.pop();
    }
    CString::new(s).expect("no NUL left")
}

extern "C" fn callback(cmd: *const c_char, params: *const c_char, d: *mut dpdk_sys::rte_tel_data) -> c_int {
    let sink = SINK.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(sink) = sink else { return -libc::ENODEV };
    let (tx, rx) = mpsc::channel();
    if sink.send(Request { cmd: text(cmd), params: text(params), reply: tx }).is_err() {
        return -libc::ENODEV;
    }
    let reply = match rx.recv_timeout(Duration::from_secs(2)) {
        Ok(Some(r)) => r,
        Ok(None) => return -libc::EINVAL,
        Err(_) => return -libc::ETIMEDOUT,
    };
    match reply {
        Reply::Dict(entries) => {
            // SAFETY: d is the live rte_tel_data DPDK handed to this callback.
            unsafe { dpdk_sys::rte_tel_data_start_dict(d) };
            for (k, v) in entries {
                let k = name(&k);
                match v {
                    // SAFETY: d as above, started as a dict; k is NUL-terminated; DPDK copies it.
                    Value::U64(n) => unsafe { dpdk_sys::rte_tel_data_add_dict_u64(d, k.as_ptr(), n) },
                    Value::Str(s) => {
                        let s = value(&s);
                        // SAFETY: as above; s is NUL-terminated and within DPDK's length limit.
                        unsafe { dpdk_sys::rte_tel_data_add_dict_string(d, k.as_ptr(), s.as_ptr()) }
                    }
                };
            }
        }
        Reply::List(items) => {
            let ty = match items.first() {
                Some(Value::U64(_)) => dpdk_sys::rte_tel_value_type_RTE_TEL_U64_VAL,
                _ => dpdk_sys::rte_tel_value_type_RTE_TEL_STRING_VAL,
            };
            // SAFETY: d is the live rte_tel_data DPDK handed to this callback.
            unsafe { dpdk_sys::rte_tel_data_start_array(d, ty) };
            for v in items {
                match v {
                    // SAFETY: d as above, started as an array of u64.
                    Value::U64(n) => unsafe { dpdk_sys::rte_tel_data_add_array_u64(d, n) },
                    Value::Str(s) => {
                        let s = value(&s);
                        // SAFETY: d as above, an array of strings; s is NUL-terminated, DPDK copies it.
                        unsafe { dpdk_sys::rte_tel_data_add_array_string(d, s.as_ptr()) }
                    }
                };
            }
        }
    }
    0
}
