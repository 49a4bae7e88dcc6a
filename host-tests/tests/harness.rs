//! Tests of the host itself, against tiny WAT guests: statuses, CAS, buffers, headers, local
//! replies, callouts, ticks, traps, wild pointers, unknown imports.

use std::collections::BTreeMap;
use std::time::Duration;

use host_tests::abi::decode_pairs;
use host_tests::{
    Decision, Error, Gateway, GrpcReply, HostCalls, HttpReply, Plugin, Request, Response, Status,
};

/// Hostcalls the WAT guests import, with their parameter types; each gets a `call_<name>` export
/// that forwards its arguments, so tests can call hostcalls directly with chosen pointers.
const HOSTCALLS: &[(&str, &str)] = &[
    ("proxy_log", "i32 i32 i32"),
    ("proxy_get_log_level", "i32"),
    ("proxy_get_current_time_nanoseconds", "i32"),
    ("proxy_set_tick_period_milliseconds", "i32"),
    ("proxy_get_buffer_bytes", "i32 i32 i32 i32 i32"),
    ("proxy_set_buffer_bytes", "i32 i32 i32 i32 i32"),
    ("proxy_get_header_map_pairs", "i32 i32 i32"),
    ("proxy_set_header_map_pairs", "i32 i32 i32"),
    ("proxy_get_header_map_value", "i32 i32 i32 i32 i32"),
    ("proxy_replace_header_map_value", "i32 i32 i32 i32 i32"),
    ("proxy_add_header_map_value", "i32 i32 i32 i32 i32"),
    ("proxy_remove_header_map_value", "i32 i32 i32"),
    ("proxy_get_property", "i32 i32 i32 i32"),
    ("proxy_set_property", "i32 i32 i32 i32"),
    ("proxy_get_shared_data", "i32 i32 i32 i32 i32"),
    ("proxy_set_shared_data", "i32 i32 i32 i32 i32"),
    (
        "proxy_send_local_response",
        "i32 i32 i32 i32 i32 i32 i32 i32",
    ),
    ("proxy_continue_stream", "i32"),
    ("proxy_close_stream", "i32"),
    ("proxy_http_call", "i32 i32 i32 i32 i32 i32 i32 i32 i32 i32"),
    ("proxy_define_metric", "i32 i32 i32 i32"),
    ("proxy_increment_metric", "i32 i64"),
    ("proxy_record_metric", "i32 i64"),
    ("proxy_get_metric", "i32 i32"),
    ("proxy_call_foreign_function", "i32 i32 i32 i32 i32 i32"),
    ("proxy_set_effective_context", "i32"),
    (
        "proxy_grpc_call",
        "i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32",
    ),
    ("proxy_get_status", "i32 i32 i32"),
];

/// A guest: the hostcall imports and forwarders, 2 pages of memory, a bump allocator from 64 KiB,
/// the ABI marker, and `body` (callbacks, data segments).
fn guest(body: &str) -> Plugin {
    let mut wat = String::from("(module\n");
    for (name, params) in HOSTCALLS {
        wat += &format!(
            "  (import \"env\" \"{name}\" (func ${name} (param {params}) (result i32)))\n"
        );
    }
    wat += "  (import \"wasi_snapshot_preview1\" \"proc_exit\" (func $proc_exit (param i32)))\n";
    for (name, params) in HOSTCALLS {
        let args: String = (0..params.split(' ').count())
            .map(|i| format!("(local.get {i}) "))
            .collect();
        wat += &format!("  (func (export \"call_{name}\") (param {params}) (result i32) (call ${name} {args}))\n");
    }
    wat += r#"
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 65536))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get $n)))
    (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  ;; Logs the single byte '0' + status at 999 (info level), so tests can see statuses.
  (func $log_status (param $s i32)
    (i32.store8 (i32.const 999) (i32.add (i32.const 48) (local.get $s)))
    (drop (call $proxy_log (i32.const 2) (i32.const 999) (i32.const 1))))
"#;
    wat += body;
    wat += "\n)";
    Plugin::from_wat(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"))
}

fn gateway(body: &str) -> Gateway {
    Gateway::builder()
        .plugin(guest(body))
        .build()
        .expect("gateway starts")
}

fn status(code: i32) -> Status {
    Status::from_code(code).unwrap_or_else(|| panic!("unknown status {code}"))
}

fn messages(gw: &Gateway) -> Vec<String> {
    gw.logs().into_iter().map(|l| l.message).collect()
}

/// Writes text into guest memory at `ptr`; returns (ptr, len).
fn put(gw: &mut Gateway, ptr: u32, text: &[u8]) -> (u32, u32) {
    gw.vm(0)
        .unwrap()
        .write_memory(ptr, text)
        .expect("in bounds");
    (ptr, text.len() as u32)
}

fn read_u32(gw: &mut Gateway, ptr: u32) -> u32 {
    let bytes = gw.vm(0).unwrap().read_memory(ptr, 4).expect("in bounds");
    u32::from_le_bytes(bytes.try_into().unwrap())
}

/// Reads the (ptr, size) pair the host returned at `ptr_ptr`/`size_ptr`.
fn returned(gw: &mut Gateway, ptr_ptr: u32, size_ptr: u32) -> Vec<u8> {
    let (ptr, size) = (read_u32(gw, ptr_ptr), read_u32(gw, size_ptr));
    gw.vm(0)
        .unwrap()
        .read_memory(ptr, size)
        .expect("returned memory in bounds")
}

#[test]
fn cas_mismatch_on_stale_cas() {
    let mut gw = gateway("");
    let (k, kl) = put(&mut gw, 100, b"quota");
    let (v1, v1l) = put(&mut gw, 200, b"one");
    let (v2, v2l) = put(&mut gw, 210, b"two");
    let set = |gw: &mut Gateway, v: u32, vl: u32, cas: u32| {
        status(
            gw.vm(0)
                .unwrap()
                .call::<(u32, u32, u32, u32, u32), i32>(
                    "call_proxy_set_shared_data",
                    (k, kl, v, vl, cas),
                )
                .unwrap(),
        )
    };
    let get = |gw: &mut Gateway| {
        status(
            gw.vm(0)
                .unwrap()
                .call::<(u32, u32, u32, u32, u32), i32>(
                    "call_proxy_get_shared_data",
                    (k, kl, 300, 304, 308),
                )
                .unwrap(),
        )
    };

    assert_eq!(get(&mut gw), Status::NotFound);
    assert_eq!(set(&mut gw, v1, v1l, 0), Status::Ok);
    assert_eq!(get(&mut gw), Status::Ok);
    assert_eq!(returned(&mut gw, 300, 304), b"one");
    let cas = read_u32(&mut gw, 308);
    assert_ne!(cas, 0);

    assert_eq!(set(&mut gw, v2, v2l, cas), Status::Ok, "fresh cas");
    assert_eq!(set(&mut gw, v1, v1l, cas), Status::CasMismatch, "stale cas");
    assert_eq!(gw.shared_data("quota").unwrap().0, b"two");
    assert_eq!(
        set(&mut gw, v1, v1l, 0),
        Status::Ok,
        "cas 0 writes unconditionally"
    );
    assert_eq!(gw.shared_data("quota").unwrap().0, b"one");
}

#[test]
fn shared_data_and_metrics_are_shared_by_vms() {
    let mut gw = Gateway::builder().plugin(guest("")).vms(3).build().unwrap();
    assert_eq!(gw.vm_count(), 3);
    for index in 0..3 {
        let vm = gw.vm(index).unwrap();
        vm.write_memory(100, b"k").unwrap();
        vm.write_memory(110, b"requests").unwrap();
    }
    let vm0 = gw.vm(0).unwrap();
    assert_eq!(
        status(
            vm0.call::<(u32, u32, u32, u32, u32), i32>(
                "call_proxy_set_shared_data",
                (100, 1, 100, 1, 0)
            )
            .unwrap()
        ),
        Status::Ok
    );
    let vm2 = gw.vm(2).unwrap();
    assert_eq!(
        status(
            vm2.call::<(u32, u32, u32, u32, u32), i32>(
                "call_proxy_get_shared_data",
                (100, 1, 300, 304, 308)
            )
            .unwrap()
        ),
        Status::Ok
    );

    let mut ids = Vec::new();
    for index in 0..3 {
        let vm = gw.vm(index).unwrap();
        assert_eq!(
            status(
                vm.call::<(u32, u32, u32, u32), i32>("call_proxy_define_metric", (0, 110, 8, 400))
                    .unwrap()
            ),
            Status::Ok
        );
        ids.push(u32::from_le_bytes(
            vm.read_memory(400, 4).unwrap().try_into().unwrap(),
        ));
        assert_eq!(
            status(
                vm.call::<(u32, i64), i32>("call_proxy_increment_metric", (ids[index], 2))
                    .unwrap()
            ),
            Status::Ok
        );
    }
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one stat, one id: {ids:?}"
    );
    assert_eq!(gw.counter("requests"), Some(6));
}

#[test]
fn metric_kinds_follow_envoy() {
    let mut gw = gateway("");
    let vm = gw.vm(0).unwrap();
    vm.write_memory(100, b"countergaugehisto").unwrap();
    let mut define = |kind: u32, ptr: u32, len: u32| {
        let code = vm
            .call::<(u32, u32, u32, u32), i32>("call_proxy_define_metric", (kind, ptr, len, 400))
            .unwrap();
        (
            status(code),
            u32::from_le_bytes(vm.read_memory(400, 4).unwrap().try_into().unwrap()),
        )
    };
    let (_, counter) = define(0, 100, 7);
    let (_, gauge) = define(1, 107, 5);
    let (_, histogram) = define(2, 112, 5);
    assert_eq!(define(7, 100, 7).0, Status::BadArgument, "unknown kind");
    assert_eq!(
        define(1, 100, 7).0,
        Status::BadArgument,
        "same name, other kind"
    );
    let vm = gw.vm(0).unwrap();
    let mut call = |name: &str, id: u32, value: i64| {
        status(vm.call::<(u32, i64), i32>(name, (id, value)).unwrap())
    };
    assert_eq!(call("call_proxy_increment_metric", counter, 5), Status::Ok);
    assert_eq!(
        call("call_proxy_increment_metric", counter, -1),
        Status::BadArgument,
        "counters only grow"
    );
    assert_eq!(call("call_proxy_record_metric", counter, 2), Status::Ok);
    assert_eq!(call("call_proxy_increment_metric", gauge, 10), Status::Ok);
    assert_eq!(call("call_proxy_increment_metric", gauge, -3), Status::Ok);
    assert_eq!(call("call_proxy_record_metric", histogram, 42), Status::Ok);
    assert_eq!(call("call_proxy_record_metric", histogram, 7), Status::Ok);
    assert_eq!(
        call("call_proxy_increment_metric", histogram, 1),
        Status::BadArgument
    );
    assert_eq!(
        call("call_proxy_increment_metric", 999, 1),
        Status::NotFound
    );
    let vm = gw.vm(0).unwrap();
    assert_eq!(
        status(
            vm.call::<(u32, u32), i32>("call_proxy_get_metric", (counter, 500))
                .unwrap()
        ),
        Status::Ok
    );
    assert_eq!(vm.read_memory(500, 8).unwrap(), 7u64.to_le_bytes());
    assert_eq!(
        status(
            vm.call::<(u32, u32), i32>("call_proxy_get_metric", (histogram, 500))
                .unwrap()
        ),
        Status::BadArgument
    );
    assert_eq!(gw.counter("counter"), Some(7));
    assert_eq!(gw.gauge("gauge"), Some(7));
    assert_eq!(gw.histogram("histo"), Some(vec![42, 7]));
    assert_eq!(gw.counter("gauge"), None, "a gauge is not a counter");
}

#[test]
fn wild_pointers_get_invalid_memory_access_not_a_panic() {
    let mut gw = gateway("");
    let wild = 0xFFFF_FFF0u32;
    let vm = gw.vm(0).unwrap();
    let cases: Vec<(&str, i32)> = vec![
        (
            "log",
            vm.call::<(u32, u32, u32), i32>("call_proxy_log", (2, wild, 100))
                .unwrap(),
        ),
        (
            "log overflow",
            vm.call::<(u32, u32, u32), i32>("call_proxy_log", (2, 10, u32::MAX))
                .unwrap(),
        ),
        (
            "time",
            vm.call::<u32, i32>("call_proxy_get_current_time_nanoseconds", wild)
                .unwrap(),
        ),
        (
            "time straddling the end",
            vm.call::<u32, i32>("call_proxy_get_current_time_nanoseconds", 2 * 65536 - 4)
                .unwrap(),
        ),
        (
            "set value",
            vm.call::<(u32, u32, u32, u32, u32), i32>(
                "call_proxy_set_shared_data",
                (100, 1, wild, 8, 0),
            )
            .unwrap(),
        ),
        (
            "define out ptr",
            vm.call::<(u32, u32, u32, u32), i32>("call_proxy_define_metric", (0, 100, 1, wild))
                .unwrap(),
        ),
        (
            "get buffer out ptr",
            vm.call::<(u32, u32, u32, u32, u32), i32>(
                "call_proxy_get_buffer_bytes",
                (7, 0, 10, wild, 300),
            )
            .unwrap(),
        ),
        (
            "local response body",
            vm.call::<(u32, u32, u32, u32, u32, u32, u32, i32), i32>(
                "call_proxy_send_local_response",
                (400, 0, 0, wild, 5, 0, 0, -1),
            )
            .unwrap(),
        ),
    ];
    for (what, code) in cases {
        assert_eq!(status(code), Status::InvalidMemoryAccess, "{what}");
    }
    // The VM is still fine.
    let vm = gw.vm(0).unwrap();
    assert_eq!(
        status(
            vm.call::<u32, i32>("call_proxy_get_current_time_nanoseconds", 100)
                .unwrap()
        ),
        Status::Ok
    );
}

#[test]
fn bad_calls_get_the_envoy_statuses() {
    let mut gw = gateway("");
    let vm = gw.vm(0).unwrap();
    vm.write_memory(100, b"nope\0clear_route_cache").unwrap();
    let code = |r: host_tests::Result<i32>| status(r.unwrap());
    assert_eq!(
        code(vm.call::<(u32, u32, u32), i32>("call_proxy_log", (9, 100, 4))),
        Status::BadArgument
    );
    assert_eq!(
        code(vm.call::<(u32, u32, u32, u32, u32), i32>(
            "call_proxy_get_buffer_bytes",
            (99, 0, 1, 300, 304)
        )),
        Status::BadArgument
    );
    assert_eq!(
        code(vm.call::<(u32, u32, u32, u32, u32), i32>(
            "call_proxy_get_buffer_bytes",
            (0, 0, 1, 300, 304)
        )),
        Status::NotFound,
        "no request body in the root context"
    );
    assert_eq!(
        code(vm.call::<(u32, u32, u32, u32, u32), i32>(
            "call_proxy_get_shared_data",
            (100, 4, 300, 304, 308)
        )),
        Status::NotFound
    );
    assert_eq!(
        code(vm.call::<(u32, u32, u32, u32), i32>("call_proxy_get_property", (100, 4, 300, 304))),
        Status::NotFound
    );
    assert_eq!(
        code(vm.call::<(u32, u32, u32, u32), i32>("call_proxy_set_property", (100, 4, 100, 4))),
        Status::NotFound,
        "no filter state outside a stream"
    );
    assert_eq!(
        code(vm.call::<(u32, u32, u32), i32>("call_proxy_get_header_map_pairs", (0, 300, 304))),
        Status::BadArgument,
        "no request headers in the root context"
    );
    assert_eq!(
        code(vm.call::<(u32, u32, u32), i32>("call_proxy_get_header_map_pairs", (42, 300, 304))),
        Status::BadArgument
    );
    assert_eq!(
        code(vm.call::<u32, i32>("call_proxy_set_effective_context", 77)),
        Status::BadArgument
    );
    assert_eq!(
        code(vm.call::<(u32, u32, u32, u32, u32, u32), i32>(
            "call_proxy_call_foreign_function",
            (100, 4, 0, 0, 300, 304)
        )),
        Status::NotFound
    );
    assert_eq!(
        code(vm.call::<(u32, u32, u32, u32, u32, u32), i32>(
            "call_proxy_call_foreign_function",
            (105, 17, 0, 0, 300, 304)
        )),
        Status::Ok
    );
    // Envoy answers the known property of the plugin.
    vm.write_memory(120, b"plugin_root_id").unwrap();
    assert_eq!(
        code(vm.call::<(u32, u32, u32, u32), i32>("call_proxy_get_property", (120, 14, 300, 304))),
        Status::Ok
    );
    assert_eq!(returned(&mut gw, 300, 304), b"tokengate");
}

#[test]
fn plugin_configuration_buffer_and_clock() {
    let mut gw = Gateway::builder()
        .plugin(guest(""))
        .config(r#"{"a":1}"#)
        .build()
        .unwrap();
    let vm = gw.vm(0).unwrap();
    assert_eq!(
        status(
            vm.call::<(u32, u32, u32, u32, u32), i32>(
                "call_proxy_get_buffer_bytes",
                (7, 0, 100, 300, 304)
            )
            .unwrap()
        ),
        Status::Ok
    );
    assert_eq!(returned(&mut gw, 300, 304), br#"{"a":1}"#);
    let vm = gw.vm(0).unwrap();
    assert_eq!(
        status(
            vm.call::<(u32, u32, u32, u32, u32), i32>(
                "call_proxy_get_buffer_bytes",
                (7, 2, 3, 300, 304)
            )
            .unwrap()
        ),
        Status::Ok
    );
    assert_eq!(returned(&mut gw, 300, 304), br#"a":"#);
    let vm = gw.vm(0).unwrap();
    assert_eq!(
        status(
            vm.call::<(u32, u32, u32, u32, u32), i32>(
                "call_proxy_get_buffer_bytes",
                (7, 100, 3, 300, 304)
            )
            .unwrap()
        ),
        Status::BadArgument,
        "start past the end"
    );
    assert_eq!(
        status(
            vm.call::<(u32, u32, u32, u32, u32), i32>(
                "call_proxy_set_buffer_bytes",
                (7, 0, 0, 100, 1)
            )
            .unwrap()
        ),
        Status::BadArgument,
        "configuration is read-only"
    );

    let before = gw.clock().now_nanos();
    gw.clock().advance(Duration::from_millis(1500));
    let vm = gw.vm(0).unwrap();
    assert_eq!(
        status(
            vm.call::<u32, i32>("call_proxy_get_current_time_nanoseconds", 400)
                .unwrap()
        ),
        Status::Ok
    );
    let now = u64::from_le_bytes(vm.read_memory(400, 8).unwrap().try_into().unwrap());
    assert_eq!(now - before, 1_500_000_000);
}

/// Headers pause; body callbacks log the buffer they see and pause until the end, then edit the
/// buffer (prepend, append, a refused middle range), annotate a header and continue.
const BUFFERING_GUEST: &str = r#"
  (data (i32.const 1000) "<>x-seen")
  (data (i32.const 1010) "body")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (call $log_status (call $proxy_get_buffer_bytes (i32.const 0) (i32.const 0) (local.get $size) (i32.const 900) (i32.const 904)))
    (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 900)) (i32.load (i32.const 904))))
    (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
    (call $log_status (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 1)))
    (call $log_status (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 1000) (i32.const 0) (i32.const 1001) (i32.const 1)))
    (call $log_status (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 2) (i32.const 1) (i32.const 1001) (i32.const 1)))
    (drop (call $proxy_add_header_map_value (i32.const 0) (i32.const 1002) (i32.const 6) (i32.const 1010) (i32.const 4)))
    (i32.const 0))
"#;

#[test]
fn body_chunks_are_buffered_while_paused_and_buffer_edits_follow_envoy() {
    let mut gw = gateway(BUFFERING_GUEST);
    let out = gw
        .request(Request::post("/upload").chunks(["ab", "cd", "ef"]))
        .unwrap();
    assert_eq!(
        messages(&gw),
        ["0", "ab", "0", "abcd", "0", "abcdef", "0", "0", "2"],
        "each body callback sees everything buffered so far; prepend and append are Ok, a middle range is BadArgument"
    );
    assert_eq!(out.decision, Decision::Forwarded);
    let forwarded = out.forwarded.as_ref().unwrap();
    assert_eq!(forwarded.body_text(), "<abcdef>");
    assert_eq!(
        forwarded.header("x-seen"),
        Some("body"),
        "headers edited after a pause still go upstream"
    );
    assert_eq!(forwarded.header(":path"), Some("/upload"));
    let actions: Vec<_> = out.actions.iter().map(|(_, a)| *a).collect();
    use host_tests::Action::{Continue, Pause};
    assert_eq!(actions, [Pause, Pause, Pause, Continue]);
    assert!(!out.finished, "waits for the response");

    let done = gw.response(&out, Response::ok().body("fine")).unwrap();
    assert!(done.finished);
    assert_eq!(done.response.unwrap().body_text(), "fine");
}

#[test]
fn a_paused_body_over_the_proxy_buffer_limit_gets_the_proxy_413() {
    let mut gw = Gateway::builder()
        .plugin(guest(BUFFERING_GUEST))
        .buffer_limit(Some(3))
        .build()
        .unwrap();
    let out = gw
        .request(Request::post("/upload").chunks(["ab", "cd", "ef"]))
        .unwrap();
    assert_eq!(out.decision, Decision::LocalReply);
    let reply = out.local_reply.unwrap();
    assert_eq!(
        (reply.status, reply.from_proxy, reply.details.as_str()),
        (413, true, "request_payload_too_large")
    );
    assert_eq!(
        messages(&gw),
        ["0", "ab", "0", "abcd"],
        "the third chunk never reaches the filter"
    );
}

/// Edits headers with every map call and logs `:path` as read back.
const HEADERS_GUEST: &str = r#"
  (data (i32.const 1000) "X-Upper")   ;; 1000, 7
  (data (i32.const 1010) "x-dup")     ;; 1010, 5
  (data (i32.const 1020) "x-gone")    ;; 1020, 6
  (data (i32.const 1030) ":path")     ;; 1030, 5
  (data (i32.const 1040) "abc")       ;; values
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $proxy_add_header_map_value (i32.const 0) (i32.const 1000) (i32.const 7) (i32.const 1040) (i32.const 1)))
    (drop (call $proxy_replace_header_map_value (i32.const 0) (i32.const 1010) (i32.const 5) (i32.const 1041) (i32.const 1)))
    (drop (call $proxy_remove_header_map_value (i32.const 0) (i32.const 1020) (i32.const 6)))
    (call $log_status (call $proxy_get_header_map_value (i32.const 0) (i32.const 1030) (i32.const 5) (i32.const 900) (i32.const 904)))
    (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 900)) (i32.load (i32.const 904))))
    (call $log_status (call $proxy_get_header_map_value (i32.const 0) (i32.const 1020) (i32.const 6) (i32.const 900) (i32.const 904)))
    (i32.const 0))
"#;

#[test]
fn header_maps_follow_envoy() {
    let mut gw = gateway(HEADERS_GUEST);
    let out = gw
        .request(
            Request::get("/v1/models")
                .add_header("x-dup", "1")
                .add_header("x-dup", "2")
                .header("x-gone", "bye"),
        )
        .unwrap();
    assert_eq!(
        messages(&gw),
        ["0", "/v1/models", "1"],
        "get returns the value; a removed header is NotFound"
    );
    let forwarded = out.forwarded.unwrap();
    assert_eq!(
        forwarded.header("x-upper"),
        Some("a"),
        "names are lowercased"
    );
    assert_eq!(
        forwarded.header_values("x-dup"),
        ["b"],
        "replace leaves one value"
    );
    assert_eq!(forwarded.header("x-gone"), None);
    assert_eq!(out.decision, Decision::Forwarded);
}

/// Replies 403 from the request headers callback and still returns Continue.
const LOCAL_REPLY_GUEST: &str = r#"
  (data (i32.const 1000) "denied")
  (data (i32.const 1010) "\01\00\00\00\0c\00\00\00\10\00\00\00content-type\00application/json\00")
  (data (i32.const 1100) "tokengate_denied")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $log_status (call $proxy_send_local_response (i32.const 403) (i32.const 1100) (i32.const 16)
      (i32.const 1000) (i32.const 6) (i32.const 1010) (i32.const 42) (i32.const -1)))
    (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (unreachable))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $proxy_log (i32.const 2) (i32.const 1100) (i32.const 9)))
    (i32.const 0))
"#;

#[test]
fn local_response_ends_the_request_and_runs_the_response_callbacks() {
    let mut gw = gateway(LOCAL_REPLY_GUEST);
    let out = gw.request(Request::post("/x").json("{}")).unwrap();
    assert_eq!(out.decision, Decision::LocalReply);
    assert!(
        out.forwarded.is_none(),
        "Continue after a local reply does not forward"
    );
    let reply = out.local_reply.as_ref().unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(reply.body_text(), "denied");
    assert_eq!(reply.details, "tokengate_denied");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.grpc_status, -1);
    let response = out.response.as_ref().unwrap();
    assert_eq!(response.header(":status"), Some("403"));
    assert_eq!(response.header("content-length"), Some("6"));
    assert_eq!(response.body_text(), "denied");
    assert_eq!(
        messages(&gw),
        ["0", "tokengate"],
        "the body callback never ran; response headers did"
    );
    assert!(out.finished);
    assert!(
        gw.response(&out, Response::ok()).is_err(),
        "the stream is over"
    );
}

#[test]
fn host_calls_are_counted_once_each_for_the_context_whose_callback_made_them() {
    let mut gw = gateway(LOCAL_REPLY_GUEST);
    assert_eq!(gw.vm(0).unwrap().root_host_calls(), HostCalls::default());
    let out = gw.request(Request::post("/x").json("{}")).unwrap();
    let calls = &out.host_calls;
    assert_eq!(
        calls.request.by_import(),
        &BTreeMap::from([("proxy_log", 1), ("proxy_send_local_response", 1)]),
        "request headers: the reply and the status logged"
    );
    assert_eq!(
        calls.response.by_import(),
        &BTreeMap::from([("proxy_log", 1)]),
        "the local reply's response headers"
    );
    assert_eq!(calls.total(), 3);
    assert_eq!((calls.request.proxy(), calls.request.wasi()), (2, 0));

    // A call the test makes through an export runs on the root context.
    let vm = gw.vm(0).unwrap();
    let logged: i32 = vm.call("call_proxy_log", (2, 1000, 6)).unwrap();
    assert_eq!(status(logged), Status::Ok);
    assert_eq!(
        vm.root_host_calls().by_import(),
        &BTreeMap::from([("proxy_log", 1)])
    );

    // WASI imports count too, by their own names.
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "hi")
      (data (i32.const 200) "\64\00\00\00\02\00\00\00")
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "_initialize") (drop (call $fd_write (i32.const 1) (i32.const 200) (i32.const 1) (i32.const 300)))))"#;
    let mut gw = Gateway::builder()
        .plugin(Plugin::from_wat(wat).unwrap())
        .build()
        .unwrap();
    let root = gw.vm(0).unwrap().root_host_calls();
    assert_eq!(root.by_import(), &BTreeMap::from([("fd_write", 1)]));
    assert_eq!((root.proxy(), root.wasi()), (0, 1));
}

#[test]
fn a_trap_is_reported_with_its_message_and_the_vm_is_not_called_again() {
    let mut gw = gateway(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (unreachable))"#,
    );
    let err = gw.request(Request::get("/")).unwrap_err();
    match &err {
        Error::Trap {
            callback, message, ..
        } => {
            assert_eq!(callback, "proxy_on_request_headers");
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("expected a trap, got {other}"),
    }
    assert!(matches!(
        gw.request(Request::get("/")),
        Err(Error::VmFailed { vm: 0 })
    ));
}

#[test]
fn proc_exit_is_a_trap_with_the_code() {
    let mut gw = gateway(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (call $proc_exit (i32.const 3)) (i32.const 0))"#,
    );
    let err = gw.request(Request::get("/")).unwrap_err();
    assert_eq!(err.trap_message(), Some("guest called proc_exit(3)"));
}

#[test]
fn configure_returning_false_rejects_the_config_with_the_logs() {
    let plugin = guest(
        r#"(data (i32.const 1000) "bad field: colour")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (drop (call $proxy_log (i32.const 4) (i32.const 1000) (i32.const 17)))
          (i32.const 0))"#,
    );
    let err = Gateway::builder()
        .plugin(plugin)
        .config("{}")
        .build()
        .err()
        .expect("rejected");
    assert!(matches!(err, Error::ConfigRejected { .. }), "{err}");
    assert_eq!(err.rejection_logs().unwrap(), ["error: bad field: colour"]);
}

#[test]
fn a_missing_wasm_says_how_to_build_it() {
    let err = Plugin::load(std::path::Path::new("/nonexistent/tokengate.wasm"))
        .err()
        .expect("missing");
    assert!(matches!(err, Error::WasmMissing { .. }));
    assert!(
        err.to_string()
            .contains("cargo build --release --target wasm32-wasip1 -p tokengate"),
        "{err}"
    );
}

#[test]
fn unknown_import_is_a_clear_error_at_load() {
    let wat = r#"(module
        (import "env" "proxy_bogus_call" (func (param i32) (result i32)))
        (import "env" "proxy_log" (func (param i32 i32 i32) (result i32)))
        (func (export "proxy_abi_version_0_2_1")))"#;
    let err = Plugin::from_wat(wat).err().expect("refused");
    let text = err.to_string();
    assert!(text.contains("env::proxy_bogus_call"), "{text}");
    assert!(!text.contains("env::proxy_log"), "{text}");

    let not_proxy_wasm = Plugin::from_wat("(module (memory 1))")
        .err()
        .expect("refused")
        .to_string();
    assert!(
        not_proxy_wasm.contains("not a proxy-wasm"),
        "{not_proxy_wasm}"
    );

    let wrong_signature = r#"(module (import "env" "proxy_log" (func (param i32) (result i32))) (func (export "proxy_abi_version_0_2_1")))"#;
    let err = Plugin::from_wat(wrong_signature)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("proxy_log"), "{err}");
}

/// Dispatches an HTTP call from the request headers and pauses; the answer logs its body and
/// resumes the request.
const CALLOUT_GUEST: &str = r#"
  (data (i32.const 1000) "limits")
  (data (i32.const 1010) "\01\00\00\00\05\00\00\00\04\00\00\00:path\00/get\00")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $log_status (call $proxy_http_call (i32.const 1000) (i32.const 6) (i32.const 1010) (i32.const 23)
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 500) (i32.const 950)))
    (i32.const 1))
  (func (export "proxy_on_http_call_response") (param $ctx i32) (param $token i32) (param $headers i32) (param $size i32) (param $trailers i32)
    (call $log_status (call $proxy_get_buffer_bytes (i32.const 4) (i32.const 0) (local.get $size) (i32.const 900) (i32.const 904)))
    (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 900)) (i32.load (i32.const 904))))
    (call $log_status (call $proxy_continue_stream (i32.const 0))))
"#;

#[test]
fn http_callouts_are_scripted_delayed_and_time_out() {
    let mut gw = gateway(CALLOUT_GUEST);
    let out = gw.request(Request::get("/")).unwrap();
    assert_eq!(
        messages(&gw),
        ["2"],
        "no responder: the cluster is unknown (BadArgument)"
    );
    assert_eq!(out.decision, Decision::Paused);

    let mut gw = gateway(CALLOUT_GUEST);
    gw.on_http_call(|call| {
        assert_eq!(call.upstream, "limits");
        assert_eq!(call.header(":path"), Some("/get"));
        Some(HttpReply::status(200, "pong").delayed(Duration::from_millis(100)))
    });
    let out = gw.request(Request::get("/")).unwrap();
    assert_eq!(out.decision, Decision::Paused);
    assert_eq!(out.http_calls.len(), 1);
    assert_eq!(out.http_calls[0].timeout, Duration::from_millis(500));
    gw.advance(Duration::from_millis(99)).unwrap();
    assert_eq!(gw.outcome(out.stream).unwrap().decision, Decision::Paused);
    gw.advance(Duration::from_millis(1)).unwrap();
    let now = gw.outcome(out.stream).unwrap();
    assert_eq!(now.decision, Decision::Forwarded, "{}", now.logs_text());
    assert_eq!(messages(&gw), ["0", "0", "pong", "0"]);

    let mut gw = gateway(CALLOUT_GUEST);
    gw.on_http_call(|_| Some(HttpReply::Timeout));
    let out = gw.request(Request::get("/")).unwrap();
    gw.advance(Duration::from_millis(499)).unwrap();
    assert_eq!(gw.outcome(out.stream).unwrap().decision, Decision::Paused);
    gw.advance(Duration::from_millis(1)).unwrap();
    assert_eq!(
        gw.outcome(out.stream).unwrap().decision,
        Decision::Forwarded
    );
    // A timed-out call has no body: get_buffer_bytes of an empty buffer is Ok with nothing.
    assert_eq!(messages(&gw), ["0", "0", "", "0"]);
}

#[test]
fn ticks_fire_as_the_clock_advances() {
    let mut gw = gateway(
        r#"(data (i32.const 1000) "ticks")
        (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
          (drop (call $proxy_set_tick_period_milliseconds (i32.const 100)))
          (drop (call $proxy_define_metric (i32.const 0) (i32.const 1000) (i32.const 5) (i32.const 900)))
          (i32.const 1))
        (func (export "proxy_on_tick") (param i32)
          (drop (call $proxy_increment_metric (i32.load (i32.const 900)) (i64.const 1))))"#,
    );
    gw.advance(Duration::from_millis(350)).unwrap();
    assert_eq!(gw.counter("ticks"), Some(3));
    gw.tick().unwrap();
    assert_eq!(gw.counter("ticks"), Some(4));
}

#[test]
fn properties_store_filter_state_the_envoy_way() {
    let mut gw = gateway(
        r#"(data (i32.const 1000) "tokengate.decision")
        (data (i32.const 1020) "allowed")
        (data (i32.const 1030) "request\00path")
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $log_status (call $proxy_set_property (i32.const 1000) (i32.const 18) (i32.const 1020) (i32.const 7)))
          (call $log_status (call $proxy_get_property (i32.const 1000) (i32.const 18) (i32.const 900) (i32.const 904)))
          (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 900)) (i32.load (i32.const 904))))
          (call $log_status (call $proxy_get_property (i32.const 1030) (i32.const 12) (i32.const 900) (i32.const 904)))
          (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 900)) (i32.load (i32.const 904))))
          (i32.const 0))"#,
    );
    let out = gw.request(Request::get("/v1/models?x=1")).unwrap();
    assert_eq!(messages(&gw), ["0", "0", "allowed", "0", "/v1/models?x=1"]);
    assert_eq!(
        out.filter_state_str("wasm.tokengate.decision").as_deref(),
        Some("allowed")
    );
    assert_eq!(
        out.logs.len(),
        5,
        "the stream's log lines are in its outcome"
    );
}

#[test]
fn foreign_calls_are_recorded_per_stream() {
    let mut gw = gateway(
        r#"(data (i32.const 1000) "clear_route_cache")
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $log_status (call $proxy_call_foreign_function (i32.const 1000) (i32.const 17) (i32.const 0) (i32.const 0) (i32.const 900) (i32.const 904)))
          (i32.const 0))"#,
    );
    let out = gw.request(Request::get("/")).unwrap();
    assert_eq!(messages(&gw), ["0"]);
    assert_eq!(out.foreign_calls.len(), 1);
    assert_eq!(out.foreign_calls[0].name, "clear_route_cache");
}

#[test]
fn wasi_stdout_and_stderr_are_captured() {
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "panicked at oops")
      (data (i32.const 200) "\64\00\00\00\10\00\00\00")
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "_initialize") (drop (call $fd_write (i32.const 2) (i32.const 200) (i32.const 1) (i32.const 300))))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (unreachable)))"#;
    let mut gw = Gateway::builder()
        .plugin(Plugin::from_wat(wat).unwrap())
        .build()
        .unwrap();
    assert_eq!(gw.vm(0).unwrap().stderr(), "panicked at oops");
    let err = gw.request(Request::get("/")).unwrap_err();
    assert!(
        err.to_string().contains("panicked at oops"),
        "the trap report carries stderr: {err}"
    );
}

/// Reads the request header pairs (logs them raw), then replaces the whole map.
const PAIRS_GUEST: &str = r#"
  (data (i32.const 1010) "\01\00\00\00\05\00\00\00\04\00\00\00:path\00/new\00")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $log_status (call $proxy_get_header_map_pairs (i32.const 0) (i32.const 900) (i32.const 904)))
    (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 900)) (i32.load (i32.const 904))))
    (call $log_status (call $proxy_set_header_map_pairs (i32.const 0) (i32.const 1010) (i32.const 23)))
    (call $log_status (call $proxy_set_header_map_pairs (i32.const 0) (i32.const 1010) (i32.const 20)))
    (i32.const 0))
"#;

#[test]
fn header_pairs_serialize_and_replace_the_map() {
    let mut gw = gateway(PAIRS_GUEST);
    let out = gw.request(Request::get("/old").header("x-a", "1")).unwrap();
    let logs = messages(&gw);
    assert_eq!(logs[0], "0");
    let pairs = decode_pairs(logs[1].as_bytes()).expect("the pairs encoding");
    assert_eq!(
        pairs,
        Request::get("/old").header("x-a", "1").headers().clone()
    );
    assert_eq!(&logs[2..], ["0", "2"], "a truncated map is BadArgument");
    assert_eq!(
        out.forwarded.unwrap().headers,
        [(":path".to_string(), "/new".to_string())]
    );
}

/// Dispatches a gRPC call and pauses; a message or a close status resumes the request.
const GRPC_GUEST: &str = r#"
  (data (i32.const 1000) "ratelimit")
  (data (i32.const 1010) "envoy.service.ratelimit.v3.RateLimitService")
  (data (i32.const 1060) "ShouldRateLimit")
  (data (i32.const 1080) "\00\00\00\00")
  (data (i32.const 1090) "req")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $log_status (call $proxy_grpc_call (i32.const 1000) (i32.const 9) (i32.const 1010) (i32.const 43)
      (i32.const 1060) (i32.const 15) (i32.const 1080) (i32.const 4) (i32.const 1090) (i32.const 3)
      (i32.const 200) (i32.const 950)))
    (i32.const 1))
  (func (export "proxy_on_grpc_receive") (param $ctx i32) (param $token i32) (param $size i32)
    (call $log_status (call $proxy_get_buffer_bytes (i32.const 5) (i32.const 0) (local.get $size) (i32.const 900) (i32.const 904)))
    (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 900)) (i32.load (i32.const 904))))
    (drop (call $proxy_continue_stream (i32.const 0))))
  (func (export "proxy_on_grpc_close") (param $ctx i32) (param $token i32) (param $code i32)
    (call $log_status (local.get $code))
    (call $log_status (call $proxy_get_status (i32.const 940) (i32.const 900) (i32.const 904)))
    (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 900)) (i32.load (i32.const 904))))
    (drop (call $proxy_continue_stream (i32.const 0))))
"#;

#[test]
fn grpc_calls_are_scripted_and_time_out() {
    let mut gw = gateway(GRPC_GUEST);
    gw.on_grpc_call(|call| {
        assert_eq!(
            (
                call.service.as_str(),
                call.method.as_str(),
                call.message.as_slice()
            ),
            (
                "envoy.service.ratelimit.v3.RateLimitService",
                "ShouldRateLimit",
                &b"req"[..]
            )
        );
        Some(GrpcReply::Message {
            message: b"ok".to_vec(),
            after: Duration::ZERO,
        })
    });
    let out = gw.request(Request::get("/")).unwrap();
    assert_eq!(
        out.decision,
        Decision::Forwarded,
        "answered right after the callback"
    );
    assert_eq!(messages(&gw), ["0", "0", "ok"]);
    assert_eq!(out.grpc_calls.len(), 1);

    let mut gw = gateway(GRPC_GUEST);
    gw.on_grpc_call(|_| {
        Some(GrpcReply::Status {
            code: 7,
            message: "denied".into(),
            after: Duration::from_millis(5),
        })
    });
    let out = gw.request(Request::get("/")).unwrap();
    assert_eq!(out.decision, Decision::Paused);
    gw.advance(Duration::from_millis(5)).unwrap();
    assert_eq!(messages(&gw), ["0", "7", "0", "denied"]);

    let mut gw = gateway(GRPC_GUEST);
    gw.on_grpc_call(|_| Some(GrpcReply::Timeout));
    let out = gw.request(Request::get("/")).unwrap();
    gw.advance(Duration::from_millis(200)).unwrap();
    assert_eq!(
        messages(&gw),
        ["0", "4", "0", "deadline exceeded"],
        "DEADLINE_EXCEEDED at the timeout"
    );
    assert_eq!(
        gw.outcome(out.stream).unwrap().decision,
        Decision::Forwarded
    );

    let mut gw = gateway(GRPC_GUEST);
    gw.request(Request::get("/")).unwrap();
    assert_eq!(
        messages(&gw),
        ["4"],
        "nobody answers that service: ParseFailure"
    );
}

#[test]
fn wasi_random_is_seeded_and_clocks_follow_the_gateway_clock() {
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "random") (param i32 i32) (result i32) (call $random (local.get 0) (local.get 1)))
      (func (export "clock") (param i32 i32) (result i32) (call $clock (local.get 0) (i64.const 1) (local.get 1)))
      (func (export "env") (param i32 i32) (result i32) (call $env (local.get 0) (local.get 1))))"#;
    let plugin = Plugin::from_wat(wat).unwrap();
    let random = |seed: u64| {
        let mut gw = Gateway::builder()
            .plugin(plugin.clone())
            .seed(seed)
            .build()
            .unwrap();
        let vm = gw.vm(0).unwrap();
        assert_eq!(vm.call::<(u32, u32), i32>("random", (100, 13)).unwrap(), 0);
        vm.read_memory(100, 13).unwrap()
    };
    assert_eq!(random(1), random(1), "same seed, same bytes");
    assert_ne!(random(1), random(2));

    let mut gw = Gateway::builder().plugin(plugin).build().unwrap();
    let start = gw.clock().now_nanos();
    gw.clock().advance(Duration::from_secs(2));
    let vm = gw.vm(0).unwrap();
    let mut read_clock = |id: u32| {
        assert_eq!(vm.call::<(u32, u32), i32>("clock", (id, 200)).unwrap(), 0);
        u64::from_le_bytes(vm.read_memory(200, 8).unwrap().try_into().unwrap())
    };
    assert_eq!(
        read_clock(0),
        start + 2_000_000_000,
        "realtime is the gateway clock"
    );
    assert_eq!(
        read_clock(1),
        2_000_000_000,
        "monotonic counts from the clock's creation"
    );
    assert_eq!(
        vm.call::<(u32, u32), i32>("clock", (9, 200)).unwrap(),
        28,
        "EINVAL for an unknown clock"
    );
    assert_eq!(vm.call::<(u32, u32), i32>("env", (300, 304)).unwrap(), 0);
    assert_eq!(vm.read_memory(300, 8).unwrap(), [0; 8], "no environment");
}
