"""Open-weight models through Envoy: a build with the test tokenizers (target/tokengate-models.wasm)
counts every conversation of tokenizers/chat_cases.json as the model's own template and tokenizer
do (the oracle's counts in that file), and a completion's prompt with the tokenizer's BOS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import MODELS_BUILD_COMMAND, MODELS_WASM, REPO_ROOT, Gateway

CASES = json.loads((REPO_ROOT / "tokenizers/chat_cases.json").read_text())["cases"]
# The tokenizer/format pairs of chat_cases.json: every one.
PAIRS = ["llama3/llama3", "llama3.1/llama3.1", "qwen3/qwen3", "qwen3/qwen2.5", "qwen3.6/qwen3.5",
         "deepseek-v3/deepseek-v3", "mistral-tekken/mistral", "gpt-oss/harmony", "gemma3/gemma3"]


def model_name(pair: str) -> str:
    return f"test/{pair}"


# One rule per pair (the model name says which), as an operator writes them; plus Hugging Face
# repo ids the way vLLM reports them.
MODELS_CONFIG = {
    "max_prompt_tokens": 100000,
    "models": [{"match": model_name(p), "tokenizer": p.split("/")[0], "chat": p.split("/")[1]} for p in PAIRS] + [
        {"match": "meta-llama/Llama-3.1-*", "tokenizer": "llama3.1", "chat": "llama3.1"},
        {"match": "meta-llama/Meta-Llama-3-*", "tokenizer": "llama3", "chat": "llama3"},
    ],
}


@pytest.fixture(scope="module")
def models_gateway(workdir, mock):
    if not MODELS_WASM.is_file():
        pytest.fail(f"{MODELS_WASM} is missing: build it with {MODELS_BUILD_COMMAND}", pytrace=False)
    gateway = Gateway(workdir, "models", mock, filter_config=MODELS_CONFIG, wasm=MODELS_WASM)
    try:
        yield gateway
    finally:
        gateway.stop()


def forwarded(gateway, path, body) -> dict[str, str]:
    resp = gateway.post(path, body)
    assert resp.status == 200, resp.text
    return gateway.upstream_request(resp)["headers"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_chat_totals_equal_the_rendered_template(models_gateway, case):
    checked = 0
    for pair in PAIRS:
        expected = case["expected"][pair]
        body = dict(case["request"], model=model_name(pair))
        resp = models_gateway.post("/v1/chat/completions", body)
        if "tokens" not in expected:
            # The template refuses the conversation; so does the edge, with an OpenAI-shaped 400.
            assert resp.status == 400, f"{pair}: {resp.status} {resp.text}"
            assert json.loads(resp.text)["error"]["param"] == "messages"
            continue
        assert resp.status == 200, f"{pair}: {resp.text}"
        headers = models_gateway.upstream_request(resp)["headers"]
        assert headers.get("x-tokengate-encoding") == pair.split("/")[0]
        if headers.get("x-tokengate-count") == "estimated":
            # Special-token text typed by a client, which the backend reads as one token and this
            # tokenizer as text (or the reverse): the one case of these that is labelled estimated.
            assert case["id"] == "special_text", pair
            continue
        assert headers.get("x-tokengate-count") == "exact", pair
        assert headers.get("x-tokengate-prompt-tokens") == str(expected["tokens"]), pair
        checked += 1
    assert checked >= 1


def test_a_completion_prompt_gets_the_tokenizers_bos(models_gateway):
    """Llama 3.1's file adds a BOS to an encoded prompt, the npm Llama 3 file none; same vocabulary."""
    prompt = "The quick brown fox jumps over the lazy dog, 12345 times."
    counts = {}
    for model in ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Meta-Llama-3-8B-Instruct"):
        headers = forwarded(models_gateway, "/v1/completions", {"model": model, "prompt": prompt})
        counts[headers["x-tokengate-encoding"]] = int(headers["x-tokengate-prompt-tokens"])
    assert counts["llama3.1"] == counts["llama3"] + 1
    two = forwarded(models_gateway, "/v1/completions", {"model": "meta-llama/Llama-3.1-8B-Instruct", "prompt": [prompt, prompt]})
    assert int(two["x-tokengate-prompt-tokens"]) == 2 * counts["llama3.1"]


def test_hugging_face_repo_ids_pick_the_rule(models_gateway):
    headers = forwarded(models_gateway, "/v1/chat/completions",
                        {"model": "meta-llama/Llama-3.1-70B-Instruct", "messages": [{"role": "user", "content": "Hi"}]})
    assert headers["x-tokengate-encoding"] == "llama3.1"
    # Meta's 3.1 template writes its default system block (Cutting Knowledge Date ...) even without a system message.
    assert int(headers["x-tokengate-prompt-tokens"]) > 25


def test_a_prompt_over_the_limit_is_refused_with_the_models_count(workdir, mock):
    """30 digits: Qwen counts one token a digit, o200k one per three; the same prompt fits for gpt-4o."""
    if not MODELS_WASM.is_file():
        pytest.fail(f"{MODELS_WASM} is missing: build it with {MODELS_BUILD_COMMAND}", pytrace=False)
    config = {"max_prompt_tokens": 25, "models": [{"match": "Qwen/*", "tokenizer": "qwen3", "chat": "qwen3"}]}
    gateway = Gateway(workdir, "models-limit", mock, filter_config=config, wasm=MODELS_WASM)
    messages = [{"role": "user", "content": "1" * 30}]
    try:
        assert gateway.post("/v1/chat/completions", {"model": "gpt-4o", "messages": messages}).status == 200
        resp = gateway.post("/v1/chat/completions", {"model": "Qwen/Qwen3-8B", "messages": messages})
        assert resp.status == 400, resp.text
        error = json.loads(resp.text)["error"]
        assert error["code"] == "context_length_exceeded"
        # <|im_start|> user \n, 30 digits, <|im_end|> \n, <|im_start|> assistant \n
        assert "38 tokens" in error["message"], error["message"]
    finally:
        gateway.stop()


def test_a_build_without_the_models_rejects_their_rules(workdir):
    """The default build (OpenAI's encodings only) names what it lacks and refuses to start."""
    from harness import run_envoy_to_exit
    code, log = run_envoy_to_exit(workdir, "no-qwen", {"models": [{"match": "Qwen/*", "tokenizer": "qwen3"}]})
    assert code != 0
    assert "`models[0].tokenizer` names \"qwen3\", which this build does not contain" in log, log
    code, log = run_envoy_to_exit(workdir, "no-chat", {"models": [{"match": "Qwen/*", "chat": "qwen3"}]})
    assert code != 0
    assert "`models[0].chat` names the chat format \"qwen3\", which this build does not have" in log, log
