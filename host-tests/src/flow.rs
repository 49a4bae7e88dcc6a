//! How Envoy moves one stream through the filter: headers, body chunks (buffered while the filter
//! pauses, so body callbacks see everything since the last `Continue`), trailers; a local reply
//! that ends the request and runs through the response callbacks; resumes; the end of the stream.

use crate::abi::{find_header, Action, Pairs};
use crate::error::{Error, Result};
use crate::host_calls::StreamHostCalls;
use crate::outcome::{Decision, LocalReply, Message, Outcome, StreamId};
use crate::state::{Side, Stream};
use crate::vm::{StreamCallback, Vm};

/// Which way the data goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Request,
    Response,
}

impl Direction {
    fn callbacks(self) -> [StreamCallback; 3] {
        match self {
            Direction::Request => [
                StreamCallback::RequestHeaders,
                StreamCallback::RequestBody,
                StreamCallback::RequestTrailers,
            ],
            Direction::Response => [
                StreamCallback::ResponseHeaders,
                StreamCallback::ResponseBody,
                StreamCallback::ResponseTrailers,
            ],
        }
    }

    fn side(self, stream: &mut Stream) -> &mut Side {
        match self {
            Direction::Request => &mut stream.request,
            Direction::Response => &mut stream.response,
        }
    }
}

/// What arrives from one side: headers, body chunks, trailers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Input {
    pub(crate) headers: Pairs,
    pub(crate) chunks: Vec<Vec<u8>>,
    pub(crate) trailers: Option<Pairs>,
}

fn stream_mut(vm: &mut Vm, context: u32) -> Result<&mut Stream> {
    let index = vm.index();
    vm.stream_mut(context)
        .ok_or_else(|| Error::Usage(format!("no stream {context} on vm {index}")))
}

/// Gives the filter one side of the stream, callback by callback, until it is all given or the
/// stream stops (local reply, reset).
pub(crate) fn drive(vm: &mut Vm, context: u32, direction: Direction, input: Input) -> Result<()> {
    let [on_headers, on_body, on_trailers] = direction.callbacks();
    let Input {
        headers,
        chunks,
        trailers,
    } = input;
    let only_headers = chunks.is_empty() && trailers.is_none();
    let count = headers.len() as u32;
    {
        let side = direction.side(stream_mut(vm, context)?);
        side.started = true;
        side.headers = Some(headers);
        side.input_done = only_headers;
    }
    if !step(vm, context, direction, on_headers, count, only_headers)? {
        return Ok(());
    }
    let last = chunks.len();
    let has_trailers = trailers.is_some();
    for (index, chunk) in chunks.into_iter().enumerate() {
        let end_of_stream = index + 1 == last && !has_trailers;
        let size = {
            let side = direction.side(stream_mut(vm, context)?);
            let body = side.body.get_or_insert_with(Vec::new);
            body.extend_from_slice(&chunk);
            side.input_done = end_of_stream;
            body.len() as u32
        };
        if !step(vm, context, direction, on_body, size, end_of_stream)? {
            return Ok(());
        }
    }
    if let Some(trailers) = trailers {
        let count = trailers.len() as u32;
        {
            let side = direction.side(stream_mut(vm, context)?);
            side.trailers = Some(trailers);
            side.input_done = true;
        }
        step(vm, context, direction, on_trailers, count, false)?;
    }
    Ok(())
}

/// One callback and what Envoy does with its answer; `false` when the stream stopped.
fn step(
    vm: &mut Vm,
    context: u32,
    direction: Direction,
    callback: StreamCallback,
    size: u32,
    end_of_stream: bool,
) -> Result<bool> {
    let replies_before = reply_count(stream_mut(vm, context)?);
    let action = vm.stream_callback(callback, context, size, end_of_stream)?;
    {
        let side = direction.side(stream_mut(vm, context)?);
        side.actions.push((callback.name(), action));
        if action == Action::Continue {
            side.resume = true;
        }
    }
    deliver_callouts(vm, Some(context))?;
    let buffer_limit = vm.state().buffer_limit;
    let stream = stream_mut(vm, context)?;
    let mut new_reply = reply_count(stream) > replies_before;
    // While a local reply runs through the response callbacks, Envoy ignores further replies.
    let ignored = direction == Direction::Response && stream.local_reply_sent;
    if !new_reply && !stream.reset && !ignored {
        new_reply = over_buffer_limit(stream, direction, buffer_limit);
    }
    let stopped = stream.reset || (new_reply && !ignored);
    if stopped {
        // A stream with a local reply does not go on, whatever the callback returned.
        stream.request.resume = false;
        stream.response.resume = false;
    } else {
        apply_resumes(stream);
    }
    Ok(!stopped)
}

/// Envoy's own answer when a paused side buffers more than the connection's buffer limit
/// (`per_connection_buffer_limit_bytes`): 413 for a request, 500 for a response. Returns whether
/// it replied.
fn over_buffer_limit(stream: &mut Stream, direction: Direction, limit: Option<usize>) -> bool {
    let side = direction.side(stream);
    let buffered = side.body.as_ref().map_or(0, Vec::len);
    let paused = !side.resume;
    if !paused || limit.is_none_or(|limit| buffered <= limit) {
        return false;
    }
    let (status, body, details) = match direction {
        Direction::Request => (413, "Payload Too Large", "request_payload_too_large"),
        Direction::Response => (500, "Internal Server Error", "response_payload_too_large"),
    };
    stream.local_reply = Some(LocalReply {
        status,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
        details: details.to_string(),
        grpc_status: -1,
        from_proxy: true,
    });
    true
}

fn reply_count(stream: &Stream) -> u32 {
    u32::from(stream.local_reply.is_some()) + stream.extra_local_replies
}

/// Sends on whatever a `Continue` or `continue_stream` released.
fn apply_resumes(stream: &mut Stream) {
    for side in [&mut stream.request, &mut stream.response] {
        if std::mem::take(&mut side.resume) && side.started {
            if side.sent_headers.is_none() {
                side.sent_headers = side.headers.clone();
            }
            if let Some(body) = side.body.take() {
                side.sent_body.extend_from_slice(&body);
            }
            if side.input_done && side.trailers.is_some() && side.sent_trailers.is_none() {
                side.sent_trailers = side.trailers.clone();
            }
        }
    }
}

/// Delivers due callout answers; streams other than `current` that they moved are concluded.
pub(crate) fn deliver_callouts(vm: &mut Vm, current: Option<u32>) -> Result<()> {
    let mut touched = vm.deliver_due_callouts()?;
    // A callout the root context owns may move any stream: the SDK hands its answer to the
    // stream that sent it.
    if touched.iter().any(|context| vm.stream(*context).is_none()) {
        touched = vm.stream_ids();
    }
    for context in touched {
        if Some(context) != current && vm.stream(context).is_some() {
            conclude(vm, context)?;
        }
    }
    Ok(())
}

/// Settles a stream the harness stopped driving: applies resumes, sends a pending local reply
/// through the response callbacks, and ends the stream once nothing more can happen.
pub(crate) fn conclude(vm: &mut Vm, context: u32) -> Result<()> {
    let stream = stream_mut(vm, context)?;
    if stream.finished {
        return Ok(());
    }
    if stream.reset {
        return vm.finish_stream(context);
    }
    if let Some(reply) = stream.local_reply.clone() {
        if !stream.local_reply_sent {
            stream.local_reply_sent = true;
            // A local reply replaces whatever response had started.
            stream.response = Side::default();
            let mut headers = vec![(":status".to_string(), reply.status.to_string())];
            headers.extend(reply.headers.iter().cloned());
            if !reply.body.is_empty() {
                headers.push(("content-length".to_string(), reply.body.len().to_string()));
                if find_header(&reply.headers, "content-type").is_none() {
                    headers.push(("content-type".to_string(), "text/plain".to_string()));
                }
            }
            let chunks = if reply.body.is_empty() {
                Vec::new()
            } else {
                vec![reply.body]
            };
            drive(
                vm,
                context,
                Direction::Response,
                Input {
                    headers,
                    chunks,
                    trailers: None,
                },
            )?;
        }
        return vm.finish_stream(context);
    }
    apply_resumes(stream);
    if stream.response.complete() {
        return vm.finish_stream(context);
    }
    Ok(())
}

fn message(side: &Side) -> Option<Message> {
    Some(Message {
        headers: side.sent_headers.clone()?,
        body: side.sent_body.clone(),
        trailers: side.sent_trailers.clone().unwrap_or_default(),
    })
}

/// A snapshot of the stream for the test.
pub(crate) fn outcome(vm: &Vm, context: u32) -> Result<Outcome> {
    let stream = vm
        .stream(context)
        .ok_or_else(|| Error::Usage(format!("no stream {context} on vm {}", vm.index())))?;
    let id = StreamId {
        vm: vm.index(),
        context_id: context,
    };
    let decision = if stream.reset {
        Decision::Reset
    } else if stream.local_reply.is_some() {
        Decision::LocalReply
    } else if stream.request.complete() {
        Decision::Forwarded
    } else {
        Decision::Paused
    };
    let shared = &vm.state().shared;
    let logs = shared
        .logs()
        .iter()
        .skip(stream.log_start)
        .filter(|l| l.vm == id.vm && l.context_id == context)
        .cloned()
        .collect();
    let (http_calls, grpc_calls) = {
        let callouts = shared.callouts();
        let mine = |vm: usize, ctx: u32| vm == id.vm && ctx == context;
        (
            callouts
                .http_calls
                .iter()
                .filter(|c| mine(c.vm, c.context_id))
                .cloned()
                .collect(),
            callouts
                .grpc_calls
                .iter()
                .filter(|c| mine(c.vm, c.context_id))
                .cloned()
                .collect(),
        )
    };
    let mut actions = stream.request.actions.clone();
    actions.extend(stream.response.actions.iter().cloned());
    Ok(Outcome {
        stream: id,
        decision,
        forwarded: message(&stream.request),
        local_reply: stream.local_reply.clone(),
        response: message(&stream.response),
        filter_state: stream.filter_state.clone(),
        foreign_calls: stream.foreign_calls.clone(),
        http_calls,
        grpc_calls,
        logs,
        actions,
        finished: stream.finished,
        host_calls: StreamHostCalls {
            request: stream.host_calls.request.named(vm.import_names()),
            response: stream.host_calls.response.named(vm.import_names()),
        },
    })
}
