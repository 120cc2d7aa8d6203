// Seeded, bounded mutation fuzzing of every parser of untrusted files (issue 18): safetensors,
// torch .bin (zip, with stored and deflated entries, and legacy), sentencepiece .model,
// tokenizer.json, config.json and images. Each case is loaded in a child process with a time and
// memory cap (test/helpers/untrusted_runner.ts, many cases per process) and must end either in a
// clean error naming its file or folder, or in a successful load with finite values. A hang, a
// crash or an unclean error fails the test with the case's seed and mutation, so it can be replayed.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { openSafetensors, readTensorBytes } from '../src/weights/index.js';
import { FIXTURES } from './helpers/goldens.js';
import { runUntrusted, type Case, type Kind } from './helpers/untrusted_runner.js';
import { legacyTorchBytes, safetensorsBytes, torchBinBytes, type RawTensor } from './weights_fixtures.js';

const SEED = 18;
const CASES_PER_FORMAT = 200;
/** config.json mutations loaded as a whole model with the tiny weights and run (each ~0.5 s). */
const MODEL_CASES = 30;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-fuzz-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** mulberry32: the same cases on every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(SEED);
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];

/** Values that break naive parsers: boundaries of every integer width, signs, NaN bit patterns. */
const HOSTILE_U32 = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff, 0x7fc00000, 0x7f800000];
const HOSTILE_JSON: unknown[] = [
  0, -1, 1.5, 1e9, 1e308, -1e308, 2 ** 53, 65536, null, true, '', 'toString', '__proto__', 'constructor', 'NaN',
  [], {}, [[[[[[[[1]]]]]]]], 'x'.repeat(10_000), Array(1000).fill(7),
];

/** Byte-level mutations; returns the new bytes and what was done (for replaying a failure). */
function mutateBytes(data: Uint8Array): [Uint8Array, string] {
  const b = Buffer.from(data);
  const at = int(b.length);
  switch (int(7)) {
    case 0: {
      const k = 1 + int(8);
      for (let i = 0; i < k; i++) b[int(b.length)] ^= 1 << int(8);
      return [b, `flip ${k} bits`];
    }
    case 1: b[at] = pick([0, 0xff, 0x7f, 0x80]); return [b, `byte ${at} = ${b[at]}`];
    case 2: {
      const v = pick(HOSTILE_U32);
      if (at + 4 <= b.length) b.writeUInt32LE(v, at);
      return [b, `u32 at ${at} = ${v}`];
    }
    case 3: {
      const v = pick([0n, 1n << 32n, 1n << 53n, (1n << 63n) - 1n, (1n << 64n) - 1n]);
      if (at + 8 <= b.length) b.writeBigUInt64LE(v, at);
      return [b, `u64 at ${at} = ${v}`];
    }
    case 4: return [b.subarray(0, at), `truncate at ${at}`];
    case 5: {
      const len = 1 + int(64);
      return [Buffer.concat([b.subarray(0, at), b.subarray(at, at + len), b.subarray(at)]), `duplicate ${len} bytes at ${at}`];
    }
    default: {
      const junk = Buffer.from(Array.from({ length: 1 + int(32) }, () => int(256)));
      return [Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]), `insert ${junk.length} bytes at ${at}`];
    }
  }
}

/** Replaces one value somewhere in a JSON document with a hostile one. */
function mutateJsonValue(root: unknown): [unknown, string] {
  const copy = structuredClone(root);
  let node = copy as Record<string, unknown>;
  const trail: string[] = [];
  for (let depth = 0; depth < 6; depth++) {
    const keys = Object.keys(node);
    if (keys.length === 0) break;
    const key = pick(keys);
    const child = node[key];
    if (child !== null && typeof child === 'object' && random() < 0.6) {
      trail.push(key);
      node = child as Record<string, unknown>;
      continue;
    }
    const value = pick(HOSTILE_JSON);
    node[key] = value;
    trail.push(key);
    return [copy, `${trail.join('.')} = ${JSON.stringify(value).slice(0, 40)}`];
  }
  return [copy, 'no change'];
}

/** Mutates a JSON text: half the time one value (stays valid JSON), else its bytes. */
function mutateJsonText(text: string, parsed: unknown): [Uint8Array, string] {
  if (random() < 0.5) {
    const [v, what] = mutateJsonValue(parsed);
    return [Buffer.from(JSON.stringify(v)), what];
  }
  return mutateBytes(Buffer.from(text));
}

// ---------------------------------------------------------------------------------------------
// Base files: small but complete examples of each format.

const fixtureTensors: RawTensor[] = [...openSafetensors(path.join(FIXTURES, 'models/tiny-altclip/model.safetensors')).values()]
  .sort((a, b) => a.byteLength - b.byteLength).slice(0, 12)
  .map((r) => ({ name: r.name, dtype: r.dtype, shape: r.shape, bytes: readTensorBytes(r) }));
const tokenizerDir = path.join(FIXTURES, 'tokenizer');
const configText = fs.readFileSync(path.join(FIXTURES, 'models/tiny-altclip/config.json'), 'utf8');
const tokenizerJsonText = fs.readFileSync(path.join(tokenizerDir, 'tokenizer.json'), 'utf8');
const tokenizerJson = JSON.parse(tokenizerJsonText);
const images = ['tiny_7x5.png', 'tall.jpg', 'palette.png', 'exif_rotated.jpg'].map((f) => fs.readFileSync(path.join(FIXTURES, 'images', f)));

interface FuzzCase extends Case { what: string }

let counter = 0;
function writeCase(kind: Kind, name: string, data: Uint8Array, what: string, folderFiles?: Record<string, string>): FuzzCase {
  const dir = path.join(tmp, `${kind.replace('.', '_')}-${counter++}`);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, name), data);
  for (const [f, src] of Object.entries(folderFiles ?? {})) fs.symlinkSync(src, path.join(dir, f));
  const isFolder = kind === 'spm' || kind === 'tokenizer.json' || kind === 'config' || kind === 'model';
  return { kind, file: isFolder ? dir : path.join(dir, name), what };
}

function makeCases(): FuzzCase[] {
  const cases: FuzzCase[] = [];
  const stBase = safetensorsBytes(fixtureTensors, { format: 'pt' });
  const binStored = torchBinBytes(fixtureTensors);
  const binDeflated = torchBinBytes(fixtureTensors, { deflate: true });
  const binLegacy = legacyTorchBytes(fixtureTensors);
  const spm = fs.readFileSync(path.join(tokenizerDir, 'sentencepiece.bpe.model'));
  const modelFiles = { 'model.safetensors': path.join(FIXTURES, 'models/tiny-altclip/model.safetensors') };
  const tokFiles = { 'special_tokens_map.json': path.join(tokenizerDir, 'special_tokens_map.json'), 'tokenizer_config.json': path.join(tokenizerDir, 'tokenizer_config.json') };
  for (let i = 0; i < CASES_PER_FORMAT; i++) {
    // safetensors: the header (as JSON values) or the bytes
    if (random() < 0.5) {
      const headerLen = Number(stBase.readBigUInt64LE(0));
      const header = JSON.parse(stBase.subarray(8, 8 + headerLen).toString());
      const [h, what] = mutateJsonValue(header);
      const json = Buffer.from(JSON.stringify(h));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(json.length));
      cases.push(writeCase('safetensors', 'model.safetensors', Buffer.concat([len, json, stBase.subarray(8 + headerLen)]), `header: ${what}`));
    } else {
      const [b, what] = mutateBytes(stBase);
      cases.push(writeCase('safetensors', 'model.safetensors', b, what));
    }
    const [base, which] = pick([[binStored, 'stored'], [binDeflated, 'deflated'], [binLegacy, 'legacy']] as const);
    const [bin, binWhat] = mutateBytes(base);
    cases.push(writeCase('bin', 'pytorch_model.bin', bin, `${which}: ${binWhat}`));
    const [model, spmWhat] = mutateBytes(spm);
    cases.push(writeCase('spm', 'sentencepiece.bpe.model', model, spmWhat, tokFiles));
    const [tj, tjWhat] = mutateJsonText(tokenizerJsonText, tokenizerJson);
    cases.push(writeCase('tokenizer.json', 'tokenizer.json', tj, tjWhat, tokFiles));
    const [config, configWhat] = mutateJsonText(configText, JSON.parse(configText));
    cases.push(writeCase('config', 'config.json', config, configWhat));
    if (i < MODEL_CASES) {
      // valid JSON whose values are hostile: config validation or the weights check must refuse
      // what cannot be this model; what passes must run and give finite features
      const [m, what] = mutateJsonValue(JSON.parse(configText));
      cases.push(writeCase('model', 'config.json', Buffer.from(JSON.stringify(m)), what, modelFiles));
    }
    const image = pick(images);
    const [img, imgWhat] = mutateBytes(image);
    cases.push(writeCase('image', `image-${i}.bin`, img, imgWhat));
  }
  return cases;
}

describe(`mutation fuzzing (seed ${SEED}, ${CASES_PER_FORMAT} cases per format)`, () => {
  test('the runner attributes a hang, a memory blow-up and a crash to their cases, and goes on', async () => {
    const config = writeCase('config', 'config.json', Buffer.from(configText), 'the fixture');
    const cases: Case[] = [config, { kind: 'probe:hang', file: '-' }, config, { kind: 'probe:memory', file: '-' }, { kind: 'probe:exit', file: '-' }, config];
    const o = await runUntrusted(cases, { timeoutMs: 10_000, maxOldSpaceMb: 256, maxRssMb: 300 });
    assert.deepEqual(o.map((r) => r.status), ['ok', 'hang', 'ok', 'crash', 'crash', 'ok']);
    assert.match(o[3].message!, /over the 300 MB cap/);
    assert.match(o[4].message!, /exit 3/);
  });

  test('every case ends in a clean error naming its file, or a clean load', async () => {
    const cases = makeCases();
    // two child processes at a time (the machine has two cores), each with its half of the cases
    const halves = [cases.filter((_, i) => i % 2 === 0), cases.filter((_, i) => i % 2 === 1)];
    const outcomes = await Promise.all(halves.map((h) => runUntrusted(h, { timeoutMs: 20_000, maxOldSpaceMb: 1024 })));
    const problems: string[] = [];
    const tally: Record<string, Record<string, number>> = {};
    halves.forEach((half, h) => half.forEach((c, i) => {
      const o = outcomes[h][i];
      (tally[c.kind] ??= {})[o.status] = (tally[c.kind]?.[o.status] ?? 0) + 1;
      const where = `${c.kind} case "${c.what}"`;
      if (o.status === 'hang' || o.status === 'crash') problems.push(`${where}: ${o.status}: ${o.message}`);
      else if (o.status === 'error' && !o.message!.includes(c.file)) problems.push(`${where}: the error does not name ${c.file}: ${o.message}`);
      else if (o.status === 'error' && /Maximum call stack|Cannot read prop|is not a function|is not iterable|Invalid array length|out of memory/.test(o.message!)) {
        problems.push(`${where}: an unclean error: ${o.message}`);
      }
      if ((o.maxRssMb ?? 0) > 2048) problems.push(`${where}: the process grew to ${o.maxRssMb} MB`);
    }));
    console.log(`outcomes by format: ${JSON.stringify(tally)}`);
    assert.deepEqual(problems, []);
    for (const kind of ['safetensors', 'bin', 'spm', 'tokenizer.json', 'config', 'model', 'image']) {
      assert.ok((tally[kind]?.error ?? 0) > 0, `${kind}: some mutations are refused`);
    }
  });
});
