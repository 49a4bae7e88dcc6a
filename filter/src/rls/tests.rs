#![allow(clippy::unwrap_used, clippy::panic)]
use super::*;
use crate::config::Config;

fn rls_config(descriptors: &str) -> RlsConfig {
    let json = format!(
        r#"{{"quota": {{"backend": {{"rls": {{"cluster": "ratelimit", "domain": "tg", "descriptors": {descriptors}}}}}}}}}"#
    );
    Config::from_json(json.as_bytes()).unwrap().quota.unwrap().rls.unwrap()
}

/// The (key, value) entries of an encoded request's one descriptor, and its hits.
fn decoded(message: &[u8]) -> (String, Vec<(String, String)>, u64) {
    // A tiny reader of exactly what `wire::encode_request` writes.
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0;
        for i in 0.. {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                break;
            }
        }
        v
    }
    fn bytes<'a>(b: &mut &'a [u8]) -> &'a [u8] {
        let n = varint(b) as usize;
        let (head, rest) = b.split_at(n);
        *b = rest;
        head
    }
    let mut b = message;
    let (mut domain, mut entries, mut hits) = (String::new(), Vec::new(), 0);
    while !b.is_empty() {
        match varint(&mut b) {
            0x0a => domain = String::from_utf8(bytes(&mut b).to_vec()).unwrap(),
            0x12 => {
                let mut d = bytes(&mut b);
                while !d.is_empty() {
                    assert_eq!(varint(&mut d), 0x0a);
                    let mut e = bytes(&mut d);
                    assert_eq!(varint(&mut e), 0x0a);
                    let k = String::from_utf8(bytes(&mut e).to_vec()).unwrap();
                    assert_eq!(varint(&mut e), 0x12);
                    let v = String::from_utf8(bytes(&mut e).to_vec()).unwrap();
                    entries.push((k, v));
                }
            }
            0x18 => hits = varint(&mut b),
            tag => panic!("unexpected tag {tag}"),
        }
    }
    (domain, entries, hits)
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn the_descriptor_is_the_key_id_then_each_entry_the_request_has() {
    let config = rls_config(r#"[{"key": "model", "from": "model"}, {"key": "tenant", "from": "header:X-Tenant"}, {"key": "team", "from": "header:x-team"}]"#);
    let values = EntryValues { model: Some("llama-3".into()), headers: vec![Some("acme".into()), None] };
    let (domain, entries, hits) = decoded(&request(&config, Some("0123456789abcdef"), &values, 812));
    assert_eq!(domain, "tg");
    assert_eq!(entries, pairs(&[("api_key", "0123456789abcdef"), ("model", "llama-3"), ("tenant", "acme")]), "absent sources are left out");
    assert_eq!(hits, 812);
    let (_, entries, hits) = decoded(&request(&config, None, &EntryValues::default(), 0));
    assert_eq!(entries, pairs(&[("api_key", ANONYMOUS)]));
    assert_eq!(hits, 1, "never 0, which Limitador reads as 1 anyway");
    let (_, _, hits) = decoded(&request(&config, None, &EntryValues::default(), 1 << 40));
    assert_eq!(hits, u64::from(u32::MAX), "hits_addend is a uint32");
}

fn status(code: u64, limit: Option<(u64, u64)>, remaining: u64, reset_s: Option<u64>) -> Vec<u8> {
    let mut s = vec![0x08, code as u8];
    if let Some((per_unit, unit)) = limit {
        let mut l = vec![0x08];
        let mut v = per_unit;
        while v >= 0x80 {
            l.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        l.extend([v as u8, 0x10, unit as u8]);
        s.extend([0x12, l.len() as u8]);
        s.extend(l);
    }
    s.extend([0x18, remaining as u8]);
    if let Some(secs) = reset_s {
        s.extend([0x22, 2, 0x08, secs as u8]);
    }
    s
}

fn response(code: u8, statuses: &[Vec<u8>]) -> Vec<u8> {
    let mut r = vec![0x08, code];
    for s in statuses {
        r.extend([0x12, s.len() as u8]);
        r.extend(s);
    }
    r
}

#[test]
fn ok_carries_the_tightest_level() {
    let r = response(1, &[status(1, Some((1000, 2)), 90, Some(30)), status(1, Some((5000, 4)), 40, Some(100))]);
    let level = Level { limit: 5000, remaining: 40, reset_ns: 100_000_000_000 };
    assert_eq!(verdict(&r), Ok(Verdict::Ok { level: Some(level) }));
    assert_eq!(verdict(&response(1, &[])), Ok(Verdict::Ok { level: None }), "Limitador sends no statuses");
}

#[test]
fn over_limit_says_when_it_resets() {
    let r = response(2, &[status(1, Some((9000, 4)), 10, Some(100)), status(2, Some((1000, 2)), 0, Some(12))]);
    let level = Level { limit: 1000, remaining: 0, reset_ns: 12_000_000_000 };
    assert_eq!(verdict(&r), Ok(Verdict::OverLimit { level: Some(level), reset_ns: Some(12_000_000_000) }));
    // No duration: at most the unit's window.
    let r = response(2, &[status(2, Some((1000, 2)), 0, None)]);
    assert_eq!(verdict(&r), Ok(Verdict::OverLimit { level: Some(Level { limit: 1000, remaining: 0, reset_ns: 60_000_000_000 }), reset_ns: Some(60_000_000_000) }));
    assert_eq!(verdict(&response(2, &[])), Ok(Verdict::OverLimit { level: None, reset_ns: None }));
}

#[test]
fn unknown_codes_and_garbage_are_failures() {
    assert!(matches!(verdict(&response(0, &[])), Err(Failure::Unreadable(_))));
    assert!(matches!(verdict(&[]), Err(Failure::Unreadable(_))), "an empty message is overall_code UNKNOWN");
    assert!(matches!(verdict(b"\xff\xff\xff"), Err(Failure::Unreadable(_))));
    assert!(matches!(verdict(b"<html>502</html>"), Err(Failure::Unreadable(_))));
    assert_eq!(Failure::Status { code: 4, message: "x".into() }.describe(), "timed out");
    assert!(Failure::Status { code: 14, message: "upstream connect error".into() }.describe().contains("14"));
}
