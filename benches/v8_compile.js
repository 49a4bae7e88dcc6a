// What Envoy's V8 spends compiling a wasm module before the filter is ready, measured in node.
//
// proxy-wasm-cpp-host turns Liftoff off, so Envoy compiles every function with TurboFan up front.
// Each run here is a fresh node process doing the same (`--no-liftoff --no-wasm-lazy-compilation`,
// one thread so runs compare; a process compiles a given module only once, later compiles hit V8's
// module cache). Prints the code section size and the median compile time of each module; with
// --top N, the N functions that take longest (V8 reports whole milliseconds per function), named
// from the module's name section.
//
// Usage: node benches/v8_compile.js [--runs 5] [--top 20] A.wasm [B.wasm ...]
'use strict';
const fs = require('fs');
const { spawnSync } = require('child_process');

const V8_FLAGS = ['--no-liftoff', '--single-threaded', '--no-wasm-lazy-compilation'];

if (process.argv[2] === '--child') {
  const bytes = fs.readFileSync(process.argv[3]);
  const t0 = process.hrtime.bigint();
  new WebAssembly.Module(bytes);
  process.stderr.write(`${Number(process.hrtime.bigint() - t0) / 1e6}\n`);
  process.exit(0);
}

const args = process.argv.slice(2);
let runs = 5, top = 0;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--runs') runs = +args[++i];
  else if (args[i] === '--top') top = +args[++i];
  else files.push(args[i]);
}
if (!files.length || !(runs > 0)) {
  console.error('usage: node <V8 flags> benches/v8_compile.js [--runs N] [--top N] A.wasm [B.wasm ...]');
  process.exit(2);
}

// Minimal reader of the sections we need: the code section's size and the function names.
function sections(bytes) {
  let p = 8;
  const leb = () => { let r = 0, s = 0, b; do { b = bytes[p++]; r |= (b & 0x7f) << s; s += 7; } while (b & 0x80); return r >>> 0; };
  const out = { codeBytes: 0, names: new Map() };
  while (p < bytes.length) {
    const id = bytes[p++], len = leb(), end = p + len;
    if (id === 10) out.codeBytes = len;
    if (id === 0) {
      const nlen = leb(), name = bytes.toString('utf8', p, p + nlen);
      p += nlen;
      while (name === 'name' && p < end) {
        const sub = bytes[p++], slen = leb(), send = p + slen;
        if (sub === 1) {
          for (let n = leb(); n > 0; n--) {
            const idx = leb(), l = leb();
            out.names.set(idx, bytes.toString('utf8', p, p + l));
            p += l;
          }
        }
        p = send;
      }
    }
    p = end;
  }
  return out;
}

for (const file of files) {
  const bytes = fs.readFileSync(file);
  const { codeBytes, names } = sections(bytes);
  const times = [];
  let trace = '';
  for (let r = 0; r < runs; r++) {
    const flags = r === 0 && top > 0 ? [...V8_FLAGS, '--trace-wasm-compilation-times'] : V8_FLAGS;
    const child = spawnSync(process.execPath, [...flags, __filename, '--child', file], { encoding: 'utf8', maxBuffer: 1 << 28 });
    const ms = parseFloat(child.stderr);
    if (child.status !== 0 || !(ms >= 0)) {
      console.error(`${file}: compile failed: ${child.stderr}`);
      process.exit(1);
    }
    times.push(ms);
    if (r === 0) trace = child.stdout;
  }
  times.sort((a, b) => a - b);
  console.log(`${file}: code ${(codeBytes / 1024).toFixed(0)} KB, compile median ${times[times.length >> 1].toFixed(0)} ms ` +
    `(min ${times[0].toFixed(0)}, max ${times[times.length - 1].toFixed(0)}, ${runs} runs)`);
  if (top > 0) {
    const rows = [];
    for (const line of trace.split('\n')) {
      const m = /#(\d+) using TurboFan, took (\d+) ms.*bodysize (\d+)/.exec(line);
      if (m) rows.push({ ms: +m[2], size: +m[3], name: names.get(+m[1]) || `#${m[1]}` });
    }
    rows.sort((a, b) => b.ms - a.ms || b.size - a.size);
    for (const r of rows.slice(0, top)) console.log(`  ${String(r.ms).padStart(4)} ms ${String(r.size).padStart(6)} B  ${r.name.slice(0, 110)}`);
  }
}
