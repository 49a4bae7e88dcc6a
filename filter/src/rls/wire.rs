//! The protobuf wire format of the two RLS v3 messages tokengate uses: `RateLimitRequest`
//! written, `RateLimitResponse` read (unknown fields skipped, as protobuf requires). Written by
//! hand: two small messages do not need a protobuf runtime in a module V8 compiles at start-up.

/// `RateLimitRequest { domain = 1; descriptors = 2 (RateLimitDescriptor { entries = 1 (Entry {
/// key = 1; value = 2 }) }); hits_addend = 3 }` with one descriptor.
pub fn encode_request(domain: &str, entries: &[(&str, &str)], hits_addend: u32) -> Vec<u8> {
    let mut descriptor = Vec::with_capacity(64);
    for (key, value) in entries {
        let mut entry = Vec::with_capacity(key.len() + value.len() + 4);
        put_bytes(&mut entry, 1, key.as_bytes());
        put_bytes(&mut entry, 2, value.as_bytes());
        put_bytes(&mut descriptor, 1, &entry);
    }
    let mut out = Vec::with_capacity(domain.len() + descriptor.len() + 16);
    put_bytes(&mut out, 1, domain.as_bytes());
    put_bytes(&mut out, 2, &descriptor);
    put_varint(&mut out, 3 << 3, u64::from(hits_addend));
    out
}

fn put_varint(out: &mut Vec<u8>, tag: u64, value: u64) {
    put_raw_varint(out, tag);
    put_raw_varint(out, value);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_raw_varint(out, (field << 3) | 2);
    put_raw_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_raw_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub &'static str);

/// A field's value as the wire has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed32 or fixed64 (no field tokengate reads has one).
    Fixed,
}

/// The fields of one message, in wire order.
struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, byte) in self.buf.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(WireError("a varint runs past the message"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], WireError> {
        let n = usize::try_from(n).map_err(|_| WireError("a length is too large"))?;
        if n > self.buf.len() {
            return Err(WireError("a field runs past the message"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn next(&mut self) -> Option<Result<(u64, Value<'a>), WireError>> {
        if self.buf.is_empty() {
            return None;
        }
        Some(self.field())
    }

    fn field(&mut self) -> Result<(u64, Value<'a>), WireError> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => self.take(8).map(|_| Value::Fixed)?,
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(n)?)
            }
            5 => self.take(4).map(|_| Value::Fixed)?,
            _ => return Err(WireError("a group or an unknown wire type")),
        };
        Ok((key >> 3, value))
    }
}

/// `RateLimitResponse` as far as tokengate reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// `overall_code`: 0 unknown, 1 OK, 2 OVER_LIMIT.
    pub code: u64,
    pub statuses: Vec<DescriptorStatus>,
}

/// `RateLimitResponse.DescriptorStatus`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DescriptorStatus {
    pub code: u64,
    /// `current_limit`: requests per unit, and the unit (1 s, 2 min, 3 h, 4 day).
    pub limit: Option<(u64, u64)>,
    pub remaining: u64,
    /// `duration_until_reset`, in nanoseconds.
    pub reset_ns: Option<u64>,
}

pub fn decode_response(bytes: &[u8]) -> Result<Response, WireError> {
    let mut response = Response::default();
    let mut fields = Fields::new(bytes);
    while let Some(field) = fields.next() {
        match field? {
            (1, Value::Varint(code)) => response.code = code,
            (2, Value::Bytes(status)) => response.statuses.push(decode_status(status)?),
            (1 | 2, _) => return Err(WireError("a field of RateLimitResponse has the wrong wire type")),
            _ => {}
        }
    }
    Ok(response)
}

fn decode_status(bytes: &[u8]) -> Result<DescriptorStatus, WireError> {
    let mut status = DescriptorStatus::default();
    let mut fields = Fields::new(bytes);
    while let Some(field) = fields.next() {
        match field? {
            (1, Value::Varint(code)) => status.code = code,
            (2, Value::Bytes(limit)) => {
                let (mut per_unit, mut unit) = (0, 0);
                let mut fields = Fields::new(limit);
                while let Some(field) = fields.next() {
                    match field? {
                        (1, Value::Varint(v)) => per_unit = v,
                        (2, Value::Varint(v)) => unit = v,
                        _ => {}
                    }
                }
                status.limit = Some((per_unit, unit));
            }
            (3, Value::Varint(remaining)) => status.remaining = remaining,
            (4, Value::Bytes(duration)) => {
                let (mut seconds, mut nanos) = (0u64, 0u64);
                let mut fields = Fields::new(duration);
                while let Some(field) = fields.next() {
                    match field? {
                        // Negative durations (two's complement varints) read as huge: clamp below.
                        (1, Value::Varint(v)) => seconds = if (v as i64) < 0 { 0 } else { v },
                        (2, Value::Varint(v)) => nanos = if (v as i64) < 0 { 0 } else { v.min(999_999_999) },
                        _ => {}
                    }
                }
                status.reset_ns = Some(seconds.saturating_mul(1_000_000_000).saturating_add(nanos));
            }
            (1..=4, _) => return Err(WireError("a field of DescriptorStatus has the wrong wire type")),
            _ => {}
        }
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_bytes_match_protobuf() {
        // Field by field; the end-to-end tests have a tonic server (prost) decode the real thing.
        let bytes = encode_request("tg", &[("api_key", "ab"), ("model", "m")], 300);
        let expected: Vec<u8> = [
            &[0x0a, 2, b't', b'g'][..],
            &[0x12, 27],
            &[0x0a, 13, 0x0a, 7],
            b"api_key",
            &[0x12, 2, b'a', b'b'],
            &[0x0a, 10, 0x0a, 5],
            b"model",
            &[0x12, 1, b'm'],
            &[0x18, 0xac, 0x02],
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn reads_code_and_statuses_and_skips_unknown_fields() {
        let mut status = vec![0x08, 2, 0x12, 5, 0x08, 0xe8, 0x07, 0x10, 2, 0x18, 5, 0x22, 5, 0x08, 42, 0x10, 0x80, 0x01];
        status.extend([0x2a, 0]); // field 5 (quota_bucket), empty
        let mut body = vec![0x08, 2, 0x12, status.len() as u8];
        body.extend(&status);
        body.extend([0x1a, 3, 1, 2, 3, 0x2d, 0, 0, 0, 0]); // headers to add; a fixed32
        let r = decode_response(&body).unwrap();
        assert_eq!(r.code, 2);
        assert_eq!(
            r.statuses,
            vec![DescriptorStatus { code: 2, limit: Some((1000, 2)), remaining: 5, reset_ns: Some(42_000_000_128) }]
        );
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        assert!(decode_response(&[0x08]).is_err());
        assert!(decode_response(&[0x12, 5, 1]).is_err());
        assert!(decode_response(&[0x0b]).is_err());
        assert!(decode_response(&[0x12, 1, 0x08]).is_err());
        assert!(decode_response(&[0x0a, 1, 0]).is_err(), "overall_code must be a varint");
        assert!(decode_response(&[0xff; 11]).is_err(), "a varint longer than ten bytes");
        assert!(decode_response(&[0x12, 2, 0x22, 9]).is_err(), "a nested length past its message");
        assert_eq!(decode_response(&[]).unwrap(), Response::default());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_read_or_fail_cleanly(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = decode_response(&bytes);
        }
    }
}
