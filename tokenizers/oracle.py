#!/usr/bin/env python3
"""The oracle for tokengate's open-weight tokenizers: token counts as the backend computes them.

Plain text (`count`) is counted as vLLM counts a /v1/completions prompt without special tokens:
Hugging Face `tokenizers` encode(text, add_special_tokens=False) for hf-json files, tiktoken with
the manifest's pattern and special tokens (after NFC) for the Qwen 3.5/3.6 rank file, and
mistral-common's Tekkenizer for Tekken. Added and special tokens written in the text are matched
as such by `tokenizers` and by the tiktoken path (allowed_special="all"); Tekken treats them as
plain text.

A conversation (`chat`) is turned into the prompt as vLLM's /v1/chat/completions does:
  jinja formats   the messages normalised as vLLM does (content parts joined with "\\n", tool-call
                  arguments parsed to objects, tools re-serialised in vLLM's field order), rendered
                  with the template in a Jinja environment set up as transformers' apply_chat_template
                  (trim_blocks, lstrip_blocks, tojson without HTML escaping, raise_exception,
                  strftime_now; bos_token etc. from tokenizer_config.json), add_generation_prompt=True,
                  chat_template_kwargs passed through; the text is then tokenized with
                  add_special_tokens=False (vLLM's default for chat), so a BOS the template writes is
                  counted once and none is added.
  mistral         mistral-common: ChatCompletionRequest.from_openai(messages, tools) encoded by
                  MistralTokenizer.from_file(tekken) (what vLLM's mistral tokenizer mode does).
  harmony         openai-harmony: the system message, developer message and conversation vLLM
                  builds for gpt-oss, render_conversation_for_completion(..., Role.ASSISTANT).

CLI:
  oracle.py count [--json] NAME [TEXT...]   no TEXT: JSON lines on stdin (a JSON string or {"text": ...})
  oracle.py chat [--json] NAME FORMAT FILE|-  FILE: a list of messages, or a request object with
                                        messages, tools, chat_template_kwargs, reasoning_effort
  oracle.py cases [--update]            chat_cases.json: verify (default) or recompute the expected counts
  oracle.py crosscheck                  compare the jinja path with transformers' apply_chat_template
                                        (needs transformers importable; not a pinned dependency)
Importable: Oracle().count(name, text), Oracle().chat(name, fmt, request) -> Rendered.
Files come from tokenizers/fetch.sh (TOKENGATE_TOKENIZER_DIR overrides target/tokenizers).
"""

import argparse
import copy
import json
import os
import sys
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
CASES = HERE / "chat_cases.json"

# vLLM decides per template whether message content reaches it as a string or as a list of
# {"type": "text", "text": ...} parts ("openai"): "openai" when the template loops over a message's
# content. Of our templates only Gemma 3's does (`for item in message['content']`); Qwen 3.5's loops
# inside a macro, which vLLM's detection does not follow, so it gets strings.
CONTENT_FORMAT = {"gemma3": "openai"}

# Harmony's system message carries the conversation start date (vLLM: today, or
# VLLM_SYSTEM_START_DATE). Every YYYY-MM-DD date has the same token count; a fixed one keeps the
# rendered text reproducible.
HARMONY_DATE = "2026-01-01"

TEXT_PART_TYPES = ("text", "input_text", "output_text", "refusal", "thinking")


class OracleError(Exception):
    pass


@dataclass
class Rendered:
    text: str
    ids: list

    @property
    def tokens(self):
        return len(self.ids)


def _special_token(value):
    return value.get("content") if isinstance(value, dict) else value


def vllm_tools(tools):
    """Tools as vLLM hands them to the template: each parsed into its pydantic models and dumped,
    so keys come in the models' order (type, function: name, description, parameters; then any
    extra keys in the client's order) and absent description/parameters become null."""
    if tools is None:
        return None
    out = []
    for tool in tools:
        fn = tool.get("function") or {}
        dumped_fn = {"name": fn.get("name"), "description": fn.get("description"), "parameters": fn.get("parameters")}
        dumped_fn.update({k: v for k, v in fn.items() if k not in dumped_fn})
        dumped = {"type": tool.get("type", "function"), "function": dumped_fn}
        dumped.update({k: v for k, v in tool.items() if k not in dumped})
        out.append(dumped)
    return out


def _texts(content):
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif part.get("type") in TEXT_PART_TYPES and part.get("text") is not None:
            texts.append(part["text"])
        elif part.get("type") not in TEXT_PART_TYPES:
            raise OracleError(f"content part of type {part.get('type')!r} is not text")
    return texts


def vllm_messages(messages, content_format="string"):
    """The conversation vLLM passes to the chat template (its parse_chat_messages, text only)."""
    conversation = []
    for msg in messages:
        role = msg["role"]
        texts = _texts(msg.get("content"))
        if content_format == "openai":
            content = [{"type": "text", "text": t} for t in texts]
        else:
            content = "\n".join(texts)
        out = {"role": role, "content": content}
        if role == "assistant":
            if msg.get("tool_calls") is not None:
                out["tool_calls"] = copy.deepcopy(list(msg["tool_calls"]))
            reasoning = msg.get("reasoning", msg.get("reasoning_content"))
            if reasoning is not None:
                out["reasoning"] = reasoning
                out["reasoning_content"] = reasoning
        elif role == "tool":
            if "tool_call_id" in msg:
                out["tool_call_id"] = msg["tool_call_id"]
            if isinstance(content, list):
                out["content"] = "\n".join(texts)
        if isinstance(msg.get("name"), str):
            out["name"] = msg["name"]
        conversation.append(out)
    for msg in conversation:
        calls = msg.get("tool_calls")
        if msg["role"] != "assistant" or not isinstance(calls, list):
            continue
        if not calls:
            del msg["tool_calls"]
            continue
        for call in calls:
            fn = call.get("function", {})
            args = fn.get("arguments")
            if not args:
                fn["arguments"] = {}
            elif isinstance(args, str):
                try:
                    parsed = json.loads(args)
                except json.JSONDecodeError:
                    parsed = None
                fn["arguments"] = parsed if isinstance(parsed, dict) else {}
    return conversation


def hf_alias_reasoning(conversation):
    """transformers copies a message's reasoning to both `reasoning_content` and `thinking`."""
    out = []
    for msg in conversation:
        reasoning = next((msg[k] for k in ("reasoning_content", "thinking", "reasoning") if msg.get(k) is not None), None)
        if reasoning is not None:
            msg = {"thinking": reasoning, **msg, "reasoning_content": reasoning}
        out.append(msg)
    return out


def hf_jinja_environment():
    """A Jinja environment configured as transformers' chat-template renderer."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


class Oracle:
    def __init__(self, root=None):
        self.manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
        self.root = Path(root or os.environ.get("TOKENGATE_TOKENIZER_DIR", HERE.parent / "target" / "tokenizers"))
        self._encoders = {}
        self._templates = {}

    # ---- plain text -------------------------------------------------------------------------

    def entry(self, name):
        try:
            return self.manifest["tokenizers"][name]
        except KeyError:
            raise OracleError(f"unknown tokenizer {name!r}; known: {', '.join(self.manifest['tokenizers'])}") from None

    def path(self, name, file=None):
        p = self.root / name / (file or self.entry(name)["file"])
        if not p.exists():
            raise OracleError(f"{p} is missing: run tokenizers/fetch.sh {name}")
        return p

    def encoder(self, name):
        """A function text -> ids, as the backend tokenizes text (no special tokens added)."""
        if name in self._encoders:
            return self._encoders[name]
        fmt = self.entry(name)["format"]
        if fmt == "hf-json":
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(self.path(name)))
            enc = lambda text: tok.encode(text, add_special_tokens=False).ids  # noqa: E731
        elif fmt == "tiktoken":
            import tiktoken
            from tiktoken.load import load_tiktoken_bpe

            spec = self.entry(name)["tiktoken"]
            tik = tiktoken.Encoding(
                name,
                pat_str=spec["pattern"],
                mergeable_ranks=load_tiktoken_bpe(str(self.path(name))),
                special_tokens=spec["special_tokens"],
            )
            form = spec.get("normalizer")
            enc = lambda text: tik.encode(unicodedata.normalize(form, text) if form else text, allowed_special="all")  # noqa: E731
        elif fmt == "tekken":
            tekken = self.mistral(name).instruct_tokenizer.tokenizer
            enc = lambda text: tekken.encode(text, bos=False, eos=False)  # noqa: E731
        else:
            raise OracleError(f"{name}: unknown format {fmt!r}")
        self._encoders[name] = enc
        return enc

    def encode(self, name, text):
        return self.encoder(name)(text)

    def count(self, name, text):
        return len(self.encode(name, text))

    # ---- conversations ----------------------------------------------------------------------

    def chat(self, name, fmt, request):
        """Renders a chat request (a list of messages or an OpenAI-style request object)."""
        if isinstance(request, list):
            request = {"messages": request}
        spec = self.manifest["chat_formats"].get(fmt)
        if spec is None:
            raise OracleError(f"unknown chat format {fmt!r}; known: {', '.join(self.manifest['chat_formats'])}")
        if name not in spec["tokenizers"]:
            raise OracleError(f"chat format {fmt} is used with {', '.join(spec['tokenizers'])}, not {name}")
        engine = spec["engine"]
        if engine == "jinja":
            return self._chat_jinja(name, fmt, request)
        if engine == "mistral-common":
            return self._chat_mistral(name, request)
        if engine == "openai-harmony":
            return self._chat_harmony(request)
        raise OracleError(f"unknown engine {engine!r}")

    def template(self, fmt):
        if fmt not in self._templates:
            path = self.root / "templates" / f"{fmt}.jinja"
            if not path.exists():
                raise OracleError(f"{path} is missing: run tokenizers/fetch.sh")
            self._templates[fmt] = path.read_text(encoding="utf-8")
        return self._templates[fmt]

    def special_tokens(self, name):
        """bos_token, eos_token, ... as apply_chat_template passes them to the template."""
        config_file = self.root / name / "tokenizer_config.json"
        if not config_file.exists():
            return {}
        config = json.loads(config_file.read_text(encoding="utf-8"))
        out = {}
        for key in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
            if config.get(key) is not None:
                out[key] = _special_token(config[key])
        if config.get("additional_special_tokens"):
            out["additional_special_tokens"] = [_special_token(t) for t in config["additional_special_tokens"]]
        return out

    def render_jinja(self, name, fmt, request):
        """The prompt text vLLM renders for a jinja chat format."""
        conversation = vllm_messages(request["messages"], CONTENT_FORMAT.get(fmt, "string"))
        env = hf_jinja_environment()
        template = env.from_string(self.template(fmt))
        kwargs = dict(self.special_tokens(name))
        kwargs.update(request.get("chat_template_kwargs") or {})
        return template.render(
            messages=hf_alias_reasoning(conversation),
            tools=vllm_tools(request.get("tools")),
            documents=None,
            add_generation_prompt=True,
            **kwargs,
        )

    def _chat_jinja(self, name, fmt, request):
        text = self.render_jinja(name, fmt, request)
        return Rendered(text, self.encode(name, text))

    def mistral(self, name):
        key = ("mistral", name)
        if key not in self._encoders:
            from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

            self._encoders[key] = MistralTokenizer.from_file(str(self.path(name)))
        return self._encoders[key]

    def _chat_mistral(self, name, request):
        from mistral_common.protocol.instruct.request import ChatCompletionRequest

        messages = copy.deepcopy(request["messages"])
        for msg in messages:
            # mistral-common wants an assistant's content as one string (vLLM joins the parts).
            if msg.get("role") == "assistant" and isinstance(msg.get("content"), list):
                msg["content"] = "\n".join(_texts(msg["content"]))
        tools = copy.deepcopy(request.get("tools"))
        for tool in tools or []:
            fn = tool.get("function", {})
            # vLLM fills what the Mistral request model requires.
            if fn.get("parameters") is None:
                fn["parameters"] = {}
            if fn.get("description") is None:
                fn["description"] = ""
        req = ChatCompletionRequest.from_openai(messages=messages, tools=tools)
        out = self.mistral(name).encode_chat_completion(req)
        return Rendered(out.text, list(out.tokens))

    @cached_property
    def harmony(self):
        os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(self.root / "gpt-oss"))
        self.path("gpt-oss", "o200k_base.tiktoken")
        from openai_harmony import HarmonyEncodingName, load_harmony_encoding

        return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)

    def harmony_messages(self, request):
        """The harmony messages vLLM builds for a /v1/chat/completions request to gpt-oss."""
        from openai_harmony import (Author, DeveloperContent, Message, ReasoningEffort, Role,
                                    SystemContent, TextContent, ToolDescription)

        efforts = {"low": ReasoningEffort.LOW, "medium": ReasoningEffort.MEDIUM, "high": ReasoningEffort.HIGH}
        messages = list(request["messages"])
        instructions = None
        if messages and messages[0].get("role") in ("system", "developer"):
            texts = _texts(messages[0].get("content"))
            instructions = "".join(texts) if messages[0].get("content") is not None else None
            messages = messages[1:]

        system = SystemContent.new()
        if request.get("reasoning_effort") is not None:
            system = system.with_reasoning_effort(efforts[request["reasoning_effort"]])
        system = system.with_conversation_start_date(request.get("conversation_start_date", HARMONY_DATE))
        out = [Message.from_role_and_content(Role.SYSTEM, system)]
        tools = request.get("tools")
        if instructions or tools:
            dev = DeveloperContent.new()
            if instructions is not None:
                dev = dev.with_instructions(instructions)
            functions = [t["function"] for t in tools or [] if t.get("type", "function") == "function"]
            if functions:
                dev = dev.with_function_tools([
                    ToolDescription.new(name=f["name"], description=f.get("description") or "", parameters=f.get("parameters"))
                    for f in functions
                ])
            out.append(Message.from_role_and_content(Role.DEVELOPER, dev))

        call_names = {}
        for msg in messages:
            for call in msg.get("tool_calls") or []:
                call_names[call.get("id")] = call.get("function", {}).get("name")
        for msg in messages:
            role = msg["role"]
            content = msg.get("content")
            reasoning = msg.get("reasoning", msg.get("reasoning_content"))
            if role == "assistant" and msg.get("tool_calls"):
                text = "".join(_texts(content)) if content is not None else None
                if text:
                    out.append(Message.from_role_and_content(Role.ASSISTANT, text).with_channel("commentary"))
                if reasoning:
                    out.append(Message.from_role_and_content(Role.ASSISTANT, reasoning).with_channel("analysis"))
                for call in msg["tool_calls"]:
                    fn = call.get("function", {})
                    args = fn.get("arguments") or ""
                    if not isinstance(args, str):
                        args = json.dumps(args)
                    out.append(
                        Message.from_role_and_content(Role.ASSISTANT, args)
                        .with_channel("commentary")
                        .with_recipient(f"functions.{fn.get('name', '')}")
                        .with_content_type("json")
                    )
                continue
            if role == "tool":
                name = call_names.get(msg.get("tool_call_id", ""), "") or ""
                text = "".join(_texts(content)) if content is not None else ""
                out.append(
                    Message.from_author_and_content(Author.new(Role.TOOL, f"functions.{name}"), text)
                    .with_channel("commentary")
                    .with_recipient("assistant")
                )
                continue
            if role == "assistant" and reasoning:
                out.append(Message.from_role_and_content(Role.ASSISTANT, reasoning).with_channel("analysis"))
            if isinstance(content, list):
                contents = [TextContent(text=t) for t in _texts(content)]
            else:
                contents = [TextContent(text=content or "")]
            if role == "assistant":
                if contents and contents[0].text:
                    out.append(Message.from_role_and_contents(Role.ASSISTANT, contents).with_channel("final"))
            elif role in ("system", "developer"):
                if content is not None:
                    dev = DeveloperContent.new().with_instructions("".join(_texts(content)))
                    out.append(Message.from_role_and_content(Role.DEVELOPER, dev))
            else:
                out.append(Message.from_role_and_contents(Role(role), contents))

        # vLLM drops the analysis (reasoning) messages before the last final answer.
        last_final = max((i for i, m in enumerate(out) if m.author.role == Role.ASSISTANT and m.channel == "final"), default=-1)
        return [m for i, m in enumerate(out) if not (i < last_final and m.channel == "analysis")]

    def _chat_harmony(self, request):
        from openai_harmony import Conversation, Role

        conversation = Conversation.from_messages(self.harmony_messages(request))
        ids = self.harmony.render_conversation_for_completion(conversation, Role.ASSISTANT)
        return Rendered(self.harmony.decode_utf8(ids), list(ids))


# ---- chat_cases.json ------------------------------------------------------------------------


def pairs(manifest):
    """Every (tokenizer, chat format) pair of the manifest, in manifest order."""
    return [(name, fmt) for name, e in manifest["tokenizers"].items() for fmt in e["chat_formats"]]


def expected_for(oracle, case):
    out = {}
    for name, fmt in pairs(oracle.manifest):
        key = f"{name}/{fmt}"
        try:
            r = oracle.chat(name, fmt, case["request"])
            out[key] = {"tokens": r.tokens, "text": r.text}
        except Exception as e:
            # A template or request model that refuses the conversation is a fact to record;
            # anything else is a bug here.
            if not type(e).__module__.split(".")[0] in ("jinja2", "mistral_common", "pydantic_core", "openai_harmony"):
                raise
            out[key] = {"error": f"{type(e).__name__}: {e}"}
    return out


def library_versions():
    from importlib.metadata import version

    return {p: version(p) for p in ("tokenizers", "jinja2", "tiktoken", "mistral-common", "openai-harmony")}


def cmd_cases(args):
    oracle = Oracle()
    data = json.loads(CASES.read_text(encoding="utf-8"))
    failures = 0
    for case in data["cases"]:
        got = expected_for(oracle, case)
        if args.update:
            case["expected"] = got
            continue
        for key, want in case.get("expected", {}).items():
            if got.get(key) != want:
                failures += 1
                print(f"MISMATCH {case['id']} {key}: expected {want.get('tokens', want.get('error'))}, got {got.get(key, {}).get('tokens', got.get(key))}")
    if args.update:
        data["versions"] = library_versions()
        CASES.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"updated {CASES} ({len(data['cases'])} cases x {len(pairs(oracle.manifest))} pairs)")
        return 0
    checked = sum(len(c.get("expected", {})) for c in data["cases"])
    print(f"{checked - failures} passed, {failures} failed")
    return 1 if failures else 0


def cmd_crosscheck(args):
    """Renders every jinja case with transformers' own apply_chat_template and compares."""
    from transformers import AutoTokenizer

    oracle = Oracle()
    data = json.loads(CASES.read_text(encoding="utf-8"))
    same = differ = 0
    for name, fmt in pairs(oracle.manifest):
        if oracle.manifest["chat_formats"][fmt]["engine"] != "jinja" or oracle.entry(name)["format"] != "hf-json":
            continue
        hf = AutoTokenizer.from_pretrained(str(oracle.root / name))
        for case in data["cases"]:
            req = case["request"]
            try:
                ours = oracle.chat(name, fmt, req)
            except Exception as e:
                ours = e
            try:
                conv = vllm_messages(req["messages"], CONTENT_FORMAT.get(fmt, "string"))
                text = hf.apply_chat_template(conv, tools=vllm_tools(req.get("tools")), chat_template=oracle.template(fmt),
                                              add_generation_prompt=True, tokenize=False, **(req.get("chat_template_kwargs") or {}))
                ids = hf.encode(text, add_special_tokens=False)
                theirs = Rendered(text, ids)
            except Exception as e:
                theirs = e
            ok = (isinstance(ours, Exception) and isinstance(theirs, Exception)) or (
                isinstance(ours, Rendered) and isinstance(theirs, Rendered) and ours.text == theirs.text and ours.ids == theirs.ids)
            same += ok
            differ += not ok
            if not ok:
                print(f"DIFFERS {case['id']} {name}/{fmt}: ours={ours!r:.200} transformers={theirs!r:.200}")
    print(f"{same} passed, {differ} failed")
    return 1 if differ else 0


def read_texts(args):
    if args.texts:
        return list(args.texts)
    texts = []
    for line in sys.stdin:
        if line.strip():
            value = json.loads(line)
            texts.append(value["text"] if isinstance(value, dict) else value)
    return texts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("count", help="token count of each text")
    c.add_argument("name")
    c.add_argument("texts", nargs="*")
    c.add_argument("--json", action="store_true", help='print {"tokens": N, "ids": [...]} per text')
    ch = sub.add_parser("chat", help="render a conversation and count its tokens")
    ch.add_argument("name")
    ch.add_argument("format")
    ch.add_argument("file", help="JSON file with a message list or a request object; - for stdin")
    ch.add_argument("--json", action="store_true", help='print {"tokens": N, "text": ..., "ids": [...]}')
    cs = sub.add_parser("cases", help="verify (default) or --update the expected counts in chat_cases.json")
    cs.add_argument("--update", action="store_true")
    sub.add_parser("crosscheck", help="compare the jinja path with transformers (needs transformers)")
    args = ap.parse_args(argv)

    try:
        if args.cmd == "count":
            oracle = Oracle()
            for text in read_texts(args):
                ids = oracle.encode(args.name, text)
                print(json.dumps({"tokens": len(ids), "ids": ids}) if args.json else len(ids))
            return 0
        if args.cmd == "chat":
            raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
            r = Oracle().chat(args.name, args.format, json.loads(raw))
            if args.json:
                print(json.dumps({"tokens": r.tokens, "text": r.text, "ids": r.ids}, ensure_ascii=False))
            else:
                print(r.text)
                print(f"tokens: {r.tokens}")
            return 0
        if args.cmd == "cases":
            return cmd_cases(args)
        if args.cmd == "crosscheck":
            return cmd_crosscheck(args)
    except OracleError as e:
        print(f"oracle: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
