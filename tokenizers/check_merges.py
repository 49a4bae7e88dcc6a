#!/usr/bin/env python3
"""Checks, for each Hugging Face BPE tokenizer.json of the manifest, whether its merge list can be
replaced by tiktoken's rule "merge the adjacent pair whose concatenation has the lowest id".

The two rules pick the same merge at every step when
  (1) ordered: the merges are sorted by the id of the token they produce (non-decreasing: all the
      splits of one token are listed together), and
  (2) complete: every way to cut a vocabulary token into two vocabulary tokens is a listed merge.
(1) makes "lowest merge index" and "lowest result id" the same order up to ties between two splits
of one token; (2) means tiktoken never joins a pair that HF would leave apart. A file that fails either may still agree in practice, so the
script also compares the two rules on generated texts (byte-level files only): Hugging Face
`tokenizers` on each text against tiktoken's rule run on the same pre-tokenized pieces with the
file's vocabulary as ranks.

Usage: check_merges.py [--texts N] [--seed S] [NAME...]   (default: every hf-json tokenizer,
       20000 random texts; files from fetch.sh)
"""

import argparse
import json
import os
import random
import sys
from pathlib import Path

from fetch import byte_level_decoder

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("TOKENGATE_TOKENIZER_DIR", HERE.parent / "target" / "tokenizers"))


def check(path):
    model = json.loads(Path(path).read_text(encoding="utf-8"))["model"]
    vocab = model["vocab"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    result_ids = [vocab.get(a + b) for a, b in merges]
    in_vocab = [r for r in result_ids if r is not None]
    inversions = sum(1 for x, y in zip(in_vocab, in_vocab[1:]) if y < x)
    # Informational: a merge whose result has a lower id than a part is reached only from a
    # later-created part; harmless under (1) and (2), but it rules out "ids grow along every merge".
    parts_after = sum(1 for (a, b), r in zip(merges, result_ids) if r is not None and r <= max(vocab[a], vocab[b]))
    merge_set = set(merges)
    splits = listed = 0
    tokens_with_unlisted = 0
    for token in vocab:
        unlisted_here = False
        for k in range(1, len(token)):
            left, right = token[:k], token[k:]
            if left in vocab and right in vocab:
                splits += 1
                if (left, right) in merge_set:
                    listed += 1
                else:
                    unlisted_here = True
        tokens_with_unlisted += unlisted_here
    return {
        "vocab": len(vocab),
        "merges": len(merges),
        "merge results not in vocab": len(merges) - len(in_vocab),
        "distinct merge results": len(set(in_vocab)),
        "ordered by result id": inversions == 0,
        "order inversions": inversions,
        "merges whose result id is not above both parts": parts_after,
        "two-token splits": splits,
        "splits listed as merges": listed,
        "splits not listed": splits - listed,
        "tokens with an unlisted split": tokens_with_unlisted,
        "complete": splits == listed,
        "ignore_merges": model.get("ignore_merges", False),
    }


def generated_texts(vocab, dec, count, seed):
    """Runs of one string (where tie-breaking between equal ranks shows), concatenations of random
    vocabulary tokens (where merges across token boundaries show), random code points."""
    rng = random.Random(seed)
    for unit in ["a", " ", "\n", "ab", "aab", "0", "!", "é", "日", "😀", "ー", "ab ", "\t", "=", "-", "*", "ааа", " a"]:
        for n in range(1, 120):
            yield unit * n
    tokens = [t for t in vocab if all(c in dec for c in t)]
    for _ in range(count):
        parts = (bytes(dec[c] for c in rng.choice(tokens)) for _ in range(rng.randint(1, 12)))
        yield b"".join(parts).decode("utf-8", "replace")
    for _ in range(count // 5):
        ranges = [(32, 126), (0xA0, 0x2FF), (0x400, 0x4FF), (0x4E00, 0x4FFF), (0x1F300, 0x1F64F)]
        yield "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(rng.randint(1, 60)))


def differential(path, count, seed):
    """(texts, texts whose ids differ) between HF tokenizers and tiktoken's rule on its pieces."""
    import tiktoken
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    vocab = json.loads(Path(path).read_text(encoding="utf-8"))["model"]["vocab"]
    dec = byte_level_decoder()
    ranks = {bytes(dec[c] for c in t): i for t, i in vocab.items() if all(c in dec for c in t)}
    # The pieces are already cut by HF's pre-tokenizer; tiktoken gets each one whole.
    whole = tiktoken.Encoding("check", pat_str=r"(?s:.+)", mergeable_ranks=ranks, special_tokens={})
    texts = differ = 0
    first = None
    for text in generated_texts(vocab, dec, count, seed):
        texts += 1
        hf = tok.encode(text, add_special_tokens=False).ids
        normalized = tok.normalizer.normalize_str(text) if tok.normalizer else text
        ours = []
        for piece, _ in tok.pre_tokenizer.pre_tokenize_str(normalized):
            ours += whole.encode_ordinary(bytes(dec[c] for c in piece).decode("utf-8"))
        if ours != hf:
            differ += 1
            first = first or text
    return texts, differ, first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    manifest = json.loads((HERE / "manifest.json").read_text(encoding="utf-8"))
    names = args.names or [n for n, e in manifest["tokenizers"].items() if e["format"] == "hf-json"]
    for name in names:
        path = ROOT / name / manifest["tokenizers"][name]["file"]
        r = check(path)
        same = r["ordered by result id"] and r["complete"] and r["merge results not in vocab"] == 0
        print(f"{name}: merges ordered by result id and complete: {'YES' if same else 'NO'}")
        for key, value in r.items():
            print(f"  {key}: {value}")
        pre = json.loads(path.read_text(encoding="utf-8"))["pre_tokenizer"]
        if "ByteLevel" in json.dumps(pre):
            texts, differ, first = differential(path, args.texts, args.seed)
            print(f"  differential (seed {args.seed}): {texts} texts, {differ} differ" + (f", first: {first!r}" if first else ""))
        else:
            print("  differential: not byte-level, skipped")


if __name__ == "__main__":
    main()
