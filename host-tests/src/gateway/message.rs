//! What tests send through a gateway: `Request` and `Response` builders that hold headers in
//! Envoy's order, body chunks and trailers, and turn into the input `flow` drives.

use crate::abi::Pairs;
use crate::flow::Input;

/// The authority requests get unless the test sets one.
pub const DEFAULT_AUTHORITY: &str = "gateway.test";

/// Builds a message: headers in order, body chunks, optional trailers.
#[derive(Clone, Debug, Default)]
pub(super) struct Parts {
    headers: Pairs,
    chunks: Vec<Vec<u8>>,
    trailers: Option<Pairs>,
}

impl Parts {
    fn set_header(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|(k, _)| *k != name);
        self.headers.push((name, value.to_string()));
    }

    fn set_body(&mut self, body: Vec<u8>) {
        self.set_header("content-length", &body.len().to_string());
        self.chunks = if body.is_empty() {
            Vec::new()
        } else {
            vec![body]
        };
    }

    fn rechunk(&mut self, size: usize) {
        let body: Vec<u8> = self.chunks.concat();
        self.chunks = body.chunks(size.max(1)).map(<[u8]>::to_vec).collect();
    }

    pub(super) fn input(&self) -> Input {
        Input {
            headers: self.headers.clone(),
            chunks: self.chunks.clone(),
            trailers: self.trailers.clone(),
        }
    }
}

/// Builder methods shared by `Request` and `Response`.
macro_rules! message_builder {
    ($ty:ident) => {
        impl $ty {
            /// Sets a header (name lowercased, as Envoy's maps hold it), replacing earlier values.
            pub fn header(mut self, name: &str, value: &str) -> Self {
                self.parts.set_header(name, value);
                self
            }

            /// Adds a header value, keeping earlier ones.
            pub fn add_header(mut self, name: &str, value: &str) -> Self {
                self.parts
                    .headers
                    .push((name.to_ascii_lowercase(), value.to_string()));
                self
            }

            /// Removes every value of a header.
            pub fn without_header(mut self, name: &str) -> Self {
                let name = name.to_ascii_lowercase();
                self.parts.headers.retain(|(k, _)| *k != name);
                self
            }

            /// The body in one chunk, with `content-length`.
            pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
                self.parts.set_body(body.into());
                self
            }

            /// A JSON body (text as given, so malformed JSON can be sent) with `content-type`.
            pub fn json(self, body: impl AsRef<str>) -> Self {
                self.header("content-type", "application/json")
                    .body(body.as_ref().as_bytes().to_vec())
            }

            /// The body as these chunks, sent without `content-length` (chunked transfer).
            pub fn chunks<I, C>(mut self, chunks: I) -> Self
            where
                I: IntoIterator<Item = C>,
                C: Into<Vec<u8>>,
            {
                self.parts.chunks = chunks.into_iter().map(Into::into).collect();
                self.without_header("content-length")
                    .header("transfer-encoding", "chunked")
            }

            /// Splits the body into chunks of `size` bytes, headers unchanged.
            pub fn in_chunks(mut self, size: usize) -> Self {
                self.parts.rechunk(size);
                self
            }

            /// Adds a trailer.
            pub fn trailer(mut self, name: &str, value: &str) -> Self {
                self.parts
                    .trailers
                    .get_or_insert_with(Vec::new)
                    .push((name.to_ascii_lowercase(), value.to_string()));
                self
            }

            /// The headers as they will be sent.
            pub fn headers(&self) -> &Pairs {
                &self.parts.headers
            }

            /// The body chunks as they will be sent.
            pub fn body_chunks(&self) -> &[Vec<u8>] {
                &self.parts.chunks
            }
        }
    };
}

/// A request as Envoy's header map holds it: pseudo-headers first, names lowercase.
#[derive(Clone, Debug)]
pub struct Request {
    pub(super) parts: Parts,
    /// The VM the test chose (`on_vm`); `None`: round-robin.
    pub(super) vm: Option<usize>,
}

message_builder!(Request);

impl Request {
    /// `:method`, `:path`, `:authority`, `:scheme` and nothing else.
    pub fn new(method: &str, path: &str) -> Request {
        let headers = [
            (":authority", DEFAULT_AUTHORITY),
            (":path", path),
            (":method", method),
            (":scheme", "http"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Request {
            parts: Parts {
                headers,
                ..Parts::default()
            },
            vm: None,
        }
    }

    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    pub fn post(path: &str) -> Request {
        Request::new("POST", path)
    }

    /// Exactly these headers and chunks, nothing added (no pseudo-headers, no content-length).
    pub fn raw(headers: &[(&str, &str)], chunks: &[&[u8]]) -> Request {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let chunks = chunks.iter().map(|c| c.to_vec()).collect();
        Request {
            parts: Parts {
                headers,
                chunks,
                trailers: None,
            },
            vm: None,
        }
    }

    /// Sends the request to VM `index` instead of the next one in round-robin order.
    pub fn on_vm(mut self, index: usize) -> Request {
        self.vm = Some(index);
        self
    }
}

/// An upstream response.
#[derive(Clone, Debug)]
pub struct Response {
    pub(super) parts: Parts,
}

message_builder!(Response);

impl Response {
    /// A response with `:status` only.
    pub fn new(status: u16) -> Response {
        Response {
            parts: Parts {
                headers: vec![(":status".to_string(), status.to_string())],
                ..Parts::default()
            },
        }
    }

    /// `200` with no body yet.
    pub fn ok() -> Response {
        Response::new(200)
    }

    /// Exactly these headers and chunks.
    pub fn raw(headers: &[(&str, &str)], chunks: &[&[u8]]) -> Response {
        let request = Request::raw(headers, chunks);
        Response {
            parts: request.parts,
        }
    }
}
