"""Mock OpenAI-compatible backend (stdlib only) that records every request, for demos and e2e tests."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

DEFAULT_COMPLETION_TOKENS = 16
MAX_REQUEST_BODY_BYTES = 64 * 1024 * 1024
EMBEDDING_DIMENSIONS = 8
MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4", "gpt-3.5-turbo", "text-embedding-3-small")
PROMPT_TOKENS_HEADER = "x-tokengate-prompt-tokens"
STREAM_DELAY_HEADER = "x-mock-stream-delay"
# Test controls of the usage the mock reports: added to the prompt count (a drifting tokenizer), the
# cached prompt tokens, and `omit` (a backend that never reports usage, streams included).
PROMPT_OFFSET_HEADER = "x-mock-prompt-offset"
CACHED_TOKENS_HEADER = "x-mock-cached-tokens"
USAGE_HEADER = "x-mock-usage"


class BadRequest(Exception):
    """A client error answered with an OpenAI-shaped 4xx body."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.param = param


def error_body(message: str, code: str | None = None, param: str | None = None,
               type_: str = "invalid_request_error") -> dict:
    """The OpenAI error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class RequestLog:
    """Thread-safe list of the requests received, served at /__mock/requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict] = []

    def add(self, entry: dict) -> None:
        with self._lock:
            self._entries.append(entry)

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def prompt_tokens(headers: dict[str, str], body_text: str) -> int:
    """The gateway's count when it sent one, else a rough chars/4 estimate."""
    value = headers.get(PROMPT_TOKENS_HEADER, "").strip()
    if value.isdigit():
        return int(value)
    return len(body_text) // 4


def stream_delay(headers: dict[str, str], default: float) -> float:
    """Seconds between SSE events: header x-mock-stream-delay (capped at 1 s) or the server's default."""
    try:
        value = float(headers[STREAM_DELAY_HEADER])
    except (KeyError, ValueError):
        return default
    return min(value, 1.0) if value > 0 else 0.0  # NaN is not > 0


def header_int(headers: dict[str, str], name: str) -> int:
    try:
        return int(headers.get(name, "0"))
    except ValueError:
        return 0


def with_usage_controls(result: dict | list[bytes], headers: dict[str, str]) -> dict | list[bytes]:
    """Applies x-mock-cached-tokens and x-mock-usage: omit to a JSON body or SSE events."""
    omit = headers.get(USAGE_HEADER, "").strip().lower() == "omit"
    cached = header_int(headers, CACHED_TOKENS_HEADER)
    if not omit and not cached:
        return result

    def edit(obj: dict) -> dict | None:
        usage = obj.get("usage")
        if omit and "usage" in obj:
            if obj.get("choices") == []:
                return None  # the usage-only chunk
            del obj["usage"]
        elif cached and isinstance(usage, dict):
            details = usage.setdefault("prompt_tokens_details", {})
            details["cached_tokens"] = cached
        return obj

    if isinstance(result, dict):
        return edit(result) or {}
    events = []
    for event in result:
        text = event.decode()
        if not text.startswith("data: {"):
            events.append(event)
            continue
        obj = edit(json.loads(text[len("data: "):]))
        if obj is not None:
            events.append(sse(obj))
    return events


def completion_tokens(request: dict) -> int:
    """min(requested output limit, 16), or 16 when the request set none."""
    for field in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = request.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return min(value, DEFAULT_COMPLETION_TOKENS)
    return DEFAULT_COMPLETION_TOKENS


def reply_pieces(name: str, count: int) -> list[str]:
    """`count` text fragments ("tokens") of a recognisable reply naming the backend."""
    words = f"Hello from mock backend {name}. This is a canned reply for tests .".split()
    return [(" " if i else "") + words[i % len(words)] for i in range(count)]


def finish_reason(produced: int) -> str:
    """"length" when the requested output limit cut the reply short."""
    return "length" if produced < DEFAULT_COMPLETION_TOKENS else "stop"


def chat_usage(prompt: int, completion: int) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }


def responses_usage(prompt: int, completion: int) -> dict:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def wants_usage(request: dict) -> bool:
    """stream_options.include_usage: a final chunk with usage and no choices."""
    options = request.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def sse(data: dict | str, event: str | None = None) -> bytes:
    """One server-sent event; dicts are sent as compact JSON like OpenAI does."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n".encode()


class Backend:
    """The OpenAI endpoints: each returns (json body) or (list of SSE events) for a parsed request."""

    def __init__(self, name: str):
        self.name = name

    def chat(self, req: dict, prompt: int) -> dict | list[bytes]:
        if not isinstance(req.get("messages"), list):
            raise BadRequest(400, "'messages' is a required property", "missing_required_parameter", "messages")
        model = str(req.get("model", "gpt-4o"))
        pieces = reply_pieces(self.name, completion_tokens(req))
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        reason = finish_reason(len(pieces))
        usage = chat_usage(prompt, len(pieces))
        if req.get("stream") is True:
            include_usage = wants_usage(req)

            def chunk(delta: dict, reason_: str | None) -> bytes:
                body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                        "system_fingerprint": "fp_mock", "choices": [
                            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason_}]}
                if include_usage:
                    body["usage"] = None
                return sse(body)

            events = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
            events += [chunk({"content": piece}, None) for piece in pieces]
            events.append(chunk({}, reason))
            if include_usage:
                events.append(sse({"id": ident, "object": "chat.completion.chunk", "created": created,
                                   "model": model, "system_fingerprint": "fp_mock", "choices": [],
                                   "usage": usage}))
            return events + [sse("[DONE]")]
        return {
            "id": ident, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces),
                                                 "refusal": None, "annotations": []},
                         "logprobs": None, "finish_reason": reason}],
            "usage": usage, "service_tier": "default",
        }

    def completions(self, req: dict, prompt: int) -> dict | list[bytes]:
        if "prompt" not in req:
            raise BadRequest(400, "'prompt' is a required property", "missing_required_parameter", "prompt")
        model = str(req.get("model", "gpt-3.5-turbo-instruct"))
        pieces = reply_pieces(self.name, completion_tokens(req))
        ident, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        reason = finish_reason(len(pieces))
        usage = {"prompt_tokens": prompt, "completion_tokens": len(pieces),
                 "total_tokens": prompt + len(pieces)}
        if req.get("stream") is True:
            include_usage = wants_usage(req)

            def chunk(text: str, reason_: str | None) -> bytes:
                return sse({"id": ident, "object": "text_completion", "created": created, "model": model,
                            "choices": [{"text": text, "index": 0, "logprobs": None,
                                         "finish_reason": reason_}]})

            events = [chunk(piece, None) for piece in pieces] + [chunk("", reason)]
            if include_usage:
                events.append(sse({"id": ident, "object": "text_completion", "created": created,
                                   "model": model, "choices": [], "usage": usage}))
            return events + [sse("[DONE]")]
        return {"id": ident, "object": "text_completion", "created": created, "model": model,
                "choices": [{"text": "".join(pieces), "index": 0, "logprobs": None, "finish_reason": reason}],
                "usage": usage}

    def embeddings(self, req: dict, prompt: int) -> dict:
        inputs = req.get("input")
        if inputs is None:
            raise BadRequest(400, "'input' is a required property", "missing_required_parameter", "input")
        # A string or one token array is one input; a list of strings or of token arrays is several.
        single = isinstance(inputs, str) or (isinstance(inputs, list) and all(isinstance(x, int) for x in inputs))
        count = 1 if single else len(inputs) if isinstance(inputs, list) else 1
        dims = req.get("dimensions") if isinstance(req.get("dimensions"), int) else EMBEDDING_DIMENSIONS
        dims = max(1, min(dims, 64))
        data = [{"object": "embedding", "index": i,
                 "embedding": [round(((i + 1) * (d + 1) % 17) / 17 - 0.5, 6) for d in range(dims)]}
                for i in range(count)]
        return {"object": "list", "data": data, "model": str(req.get("model", "text-embedding-3-small")),
                "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}

    def responses(self, req: dict, prompt: int) -> dict | list[bytes]:
        if "input" not in req:
            raise BadRequest(400, "Missing required parameter: 'input'.", "missing_required_parameter", "input")
        model = str(req.get("model", "gpt-4o"))
        pieces = reply_pieces(self.name, completion_tokens(req))
        ident, msg_id, created = f"resp_{uuid.uuid4().hex}", f"msg_{uuid.uuid4().hex}", int(time.time())
        text = "".join(pieces)
        incomplete = len(pieces) < DEFAULT_COMPLETION_TOKENS
        message = {"type": "message", "id": msg_id, "status": "incomplete" if incomplete else "completed",
                   "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]}
        response = {"id": ident, "object": "response", "created_at": created,
                    "status": "incomplete" if incomplete else "completed",
                    "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
                    "error": None, "model": model, "output": [message],
                    "max_output_tokens": req.get("max_output_tokens"),
                    "usage": responses_usage(prompt, len(pieces))}
        if req.get("stream") is True:
            pending = dict(response, status="in_progress", output=[], usage=None, incomplete_details=None)
            events = [sse({"type": "response.created", "sequence_number": 0, "response": pending},
                          "response.created")]
            for seq, piece in enumerate(pieces, start=1):
                events.append(sse({"type": "response.output_text.delta", "sequence_number": seq,
                                   "item_id": msg_id, "output_index": 0, "content_index": 0, "delta": piece},
                                  "response.output_text.delta"))
            done = "response.incomplete" if incomplete else "response.completed"
            events.append(sse({"type": done, "sequence_number": len(pieces) + 1, "response": response}, done))
            return events
        return response

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 1715367049,
                                             "owned_by": "system"} for m in MODELS]}


ENDPOINTS = {
    "/v1/chat/completions": Backend.chat,
    "/v1/completions": Backend.completions,
    "/v1/embeddings": Backend.embeddings,
    "/v1/responses": Backend.responses,
}


class Handler(BaseHTTPRequestHandler):
    """Routes by path suffix, so any prefix before /v1/ works (e.g. /openai/v1/chat/completions)."""

    protocol_version = "HTTP/1.1"
    server_version = "tokengate-mock/1"
    server: "MockServer"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The stdlib's HTML error page (bad request line, unsupported method) as an OpenAI error instead.
        self.close_connection = True
        self.send_json(code, error_body(message or explain or "bad request"))

    def do_GET(self) -> None:
        self.handle_any()

    def do_POST(self) -> None:
        self.handle_any()

    def do_PUT(self) -> None:
        self.handle_any()

    def do_DELETE(self) -> None:
        self.handle_any()

    def handle_any(self) -> None:
        try:
            body = self.read_body()
        except (ValueError, OSError) as err:
            self.close_connection = True
            self.send_json(400, error_body(f"Could not read the request body: {err}"))
            return
        path = urlsplit(self.path).path
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            key = key.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        text = body.decode("utf-8", errors="replace")
        if path == "/__mock/requests" and self.command == "GET":
            self.send_json(200, self.server.requests.snapshot())
            return
        if path == "/__mock/reset" and self.command == "POST":
            self.server.requests.clear()
            self.send_json(200, {"status": "reset"})
            return
        self.server.requests.add({"method": self.command, "path": self.path, "headers": headers, "body": text})
        try:
            self.route(path, headers, text)
        except BadRequest as err:
            self.send_json(err.status, error_body(str(err), err.code, err.param))
        except Exception as err:  # never crash the server on a request we did not foresee
            self.send_json(500, error_body(f"mock backend error: {err!r}", type_="server_error"))

    def route(self, path: str, headers: dict[str, str], text: str) -> None:
        if path == "/healthz":
            self.send_json(200, {"status": "ok", "backend": self.server.backend.name})
            return
        if path.endswith("/v1/models") and self.command == "GET":
            self.send_json(200, self.server.backend.models())
            return
        endpoint = next((fn for suffix, fn in ENDPOINTS.items() if path.endswith(suffix)), None)
        if endpoint is None:
            raise BadRequest(404, f"Invalid URL ({self.command} {path})", "unknown_url")
        if self.command != "POST":
            raise BadRequest(405, f"Method {self.command} not allowed for {path}", "method_not_allowed")
        try:
            request = json.loads(text)
        except json.JSONDecodeError as err:
            raise BadRequest(400, f"We could not parse the JSON body of your request. ({err})",
                             "invalid_json") from None
        if not isinstance(request, dict):
            raise BadRequest(400, "The request body must be a JSON object.", "invalid_json")
        prompt = prompt_tokens(headers, text) + header_int(headers, PROMPT_OFFSET_HEADER)
        result = endpoint(self.server.backend, request, max(prompt, 0))
        result = with_usage_controls(result, headers)
        if isinstance(result, list):
            self.send_stream(result, stream_delay(headers, self.server.stream_delay))
        else:
            self.send_json(200, result)

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_REQUEST_BODY_BYTES:
            raise ValueError(f"bad content-length {length}")
        return self.rfile.read(length)

    def read_chunked(self) -> bytes:
        parts, total = [], 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_REQUEST_BODY_BYTES:
                raise ValueError("chunked body too large")
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)  # CRLF after each chunk

    def common_headers(self) -> None:
        self.send_header("x-mock-backend", self.server.backend.name)
        headers = getattr(self, "headers", None)  # absent when the request line itself was bad
        self.send_header("x-request-id", (headers and headers.get("x-request-id")) or f"req_{uuid.uuid4().hex}")

    def send_json(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.common_headers()
        self.end_headers()
        self.wfile.write(data)

    def send_stream(self, events: list[bytes], delay: float) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.common_headers()
        self.end_headers()
        for event in events:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            if delay:
                time.sleep(delay)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class MockServer(ThreadingHTTPServer):
    """Threaded HTTP server carrying the backend, the request log and output settings."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], name: str, verbose: bool = False, stream_delay: float = 0.0):
        super().__init__(address, Handler)
        self.backend = Backend(name)
        self.requests = RequestLog()
        self.verbose = verbose
        self.stream_delay = stream_delay

    def handle_error(self, request, client_address) -> None:
        # A client hanging up mid-response is routine for a proxy's upstream; stay quiet unless verbose.
        if self.verbose:
            super().handle_error(request, client_address)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed on start)")
    parser.add_argument("--name", default="mock", help="sent as x-mock-backend and in reply texts")
    parser.add_argument("--stream-delay", type=float, default=0.0,
                        help=f"seconds between SSE events (a request can set {STREAM_DELAY_HEADER})")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    server = MockServer((args.host, args.port), args.name, args.verbose, args.stream_delay)
    host, port = server.server_address[:2]
    print(f"mock backend {args.name} listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
