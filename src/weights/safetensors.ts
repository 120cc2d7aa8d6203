// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {str: str}}`, then the data.
// Only the header is read. Validation follows the Rust reference (`SafeTensors::read_metadata` /
// `Metadata::validate`): offsets start at 0, are sorted with no gaps or overlaps, each range holds
// exactly numel * itemsize bytes, and the last one ends at the end of the file.
import * as fs from 'node:fs';
import { byteSize, isDType, numelOf, type TensorRef } from './dtype.js';
import { describe, jsonDepth } from '../untrusted.js';

/** The Rust reader refuses headers above 100 MB (`HeaderTooLarge`). */
const MAX_HEADER = 100_000_000;
/** A header nests 3 levels ({name: {shape: [...]}}); deeper ones are refused before parsing. */
const MAX_HEADER_DEPTH = 4;

/** The tensors of a safetensors file, by name, after validating its header. */
export function openSafetensors(file: string): Map<string, TensorRef> {
  const real = fs.realpathSync(file);
  const fd = fs.openSync(real, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const fail = (problem: string): never => {
      throw new Error(`${file}: not a valid safetensors file: ${problem}`);
    };
    if (size < 8) fail(`only ${size} bytes (truncated?)`);
    const lenBuf = Buffer.alloc(8);
    fs.readSync(fd, lenBuf, 0, 8, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(MAX_HEADER)) fail(`header length ${n} is over the 100 MB limit`);
    const headerLen = Number(n);
    if (8 + headerLen > size) fail(`header length ${headerLen} runs past the end of the file (${size} bytes; truncated?)`);
    const headerBuf = Buffer.alloc(headerLen);
    if (fs.readSync(fd, headerBuf, 0, headerLen, 8) !== headerLen) fail('could not read the header');

    // The format requires the JSON to start with "{" (safetensors' InvalidHeaderStart) and be UTF-8.
    if (headerBuf[0] !== 0x7b) fail('header does not start with "{"');
    let header: unknown;
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(headerBuf);
      if (jsonDepth(text, MAX_HEADER_DEPTH) > MAX_HEADER_DEPTH) fail(`header nests deeper than the ${MAX_HEADER_DEPTH} levels of {name: {shape: [...]}}`);
      header = JSON.parse(text);
    } catch (e) {
      if ((e as Error).message.startsWith(file)) throw e;
      fail(`header is not valid JSON (${(e as Error).message})`);
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');

    const dataStart = 8 + headerLen;
    const dataLen = size - dataStart;
    const entries: { ref: TensorRef; begin: number; end: number }[] = [];
    for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        const ok = typeof info === 'object' && info !== null && !Array.isArray(info)
          && Object.values(info).every((v) => typeof v === 'string');
        if (!ok) fail('"__metadata__" must map strings to strings');
        continue;
      }
      const bad = (problem: string) => fail(`tensor ${describe(name)}: ${problem}`);
      if (typeof info !== 'object' || info === null) bad('entry is not an object');
      const { dtype, shape, data_offsets: offs } = info as Record<string, unknown>;
      if (!isDType(dtype)) bad(`unknown dtype ${describe(dtype)}`);
      if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        bad(`shape ${describe(shape)} is not a list of non-negative integers`);
      }
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
        bad(`data_offsets ${describe(offs)} is not a pair of non-negative integers`);
      }
      const [begin, end] = offs as [number, number];
      if (end < begin) bad(`data_offsets [${begin}, ${end}] end before they begin`);
      if (end > dataLen) bad(`data_offsets [${begin}, ${end}] run past the end of the data (${dataLen} bytes; truncated?)`);
      const numel = numelOf(shape as number[]);
      if (numel === null) bad(`shape ${describe(shape)} has more elements than can be counted (over 2^53)`);
      const bytes = byteSize(dtype as never, numel as number);
      if (bytes === null) bad(`shape ${describe(shape)} of ${dtype} is not a whole number of bytes`);
      if (bytes !== end - begin) {
        bad(`shape ${describe(shape)} of ${dtype} needs ${bytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`);
      }
      entries.push({
        ref: { name, dtype: dtype as never, shape: shape as number[], file: real, offset: dataStart + begin, byteLength: end - begin },
        begin, end,
      });
    }

    // Sorted by offset, the ranges must tile [0, dataLen) exactly.
    entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
    let pos = 0;
    let prev = '';
    for (const { ref, begin, end } of entries) {
      if (begin < pos) fail(`tensor "${ref.name}" (bytes ${begin}..${end}) overlaps tensor "${prev}" (ends at ${pos})`);
      if (begin > pos) fail(`gap in the data before tensor "${ref.name}" (bytes ${pos}..${begin} belong to no tensor)`);
      pos = end;
      prev = ref.name;
    }
    if (pos !== dataLen) fail(`the tensors cover ${pos} bytes of data but the file has ${dataLen} after the header`);
    return new Map(entries.map((e) => [e.ref.name, e.ref]));
  } finally {
    fs.closeSync(fd);
  }
}
