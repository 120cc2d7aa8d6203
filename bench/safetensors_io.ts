// Minimal safetensors reading/writing for the benchmark's own files (inputs, output features, the
// generated checkpoint's header). The library's validated reader lives in src/weights/; this is only
// for small files the benchmark writes itself.
import { readFileSync, writeFileSync } from 'node:fs';

export type BenchDType = 'F32' | 'I64';
export interface BenchTensor {
  dtype: BenchDType;
  shape: number[];
  data: Float32Array | BigInt64Array;
}

interface HeaderEntry {
  name: string;
  dtype: BenchDType;
  shape: number[];
}

/** The header bytes (length prefix + JSON padded with spaces to 8 bytes) for tensors stored in the
 * given order, back to back; as the safetensors format specifies. */
export function safetensorsHeader(entries: HeaderEntry[], metadata: Record<string, string> = { format: 'pt' }): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const e of entries) {
    const bytes = e.shape.reduce((a, b) => a * b, 1) * (e.dtype === 'F32' ? 4 : 8);
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const out = Buffer.alloc(8 + Buffer.byteLength(json));
  out.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  out.write(json, 8);
  return out;
}

export function writeSafetensors(file: string, tensors: Record<string, BenchTensor>): void {
  const names = Object.keys(tensors).sort();
  const head = safetensorsHeader(names.map((name) => ({ name, dtype: tensors[name].dtype, shape: tensors[name].shape })));
  const parts: Buffer[] = [head];
  for (const n of names) {
    const d = tensors[n].data;
    parts.push(Buffer.from(d.buffer, d.byteOffset, d.byteLength));
  }
  writeFileSync(file, Buffer.concat(parts));
}

export function readSafetensors(file: string, names?: string[]): Map<string, BenchTensor> {
  const buf = readFileSync(file);
  if (buf.length < 8) throw new Error(`${file}: not a safetensors file (too short)`);
  const n = Number(buf.readBigUInt64LE(0));
  if (8 + n > buf.length) throw new Error(`${file}: header length ${n} exceeds file size ${buf.length}`);
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, BenchTensor>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__' || (names && !names.includes(name))) continue;
    const [b, end] = e.data_offsets;
    const bytes = buf.subarray(8 + n + b, 8 + n + end);
    const copy = new Uint8Array(bytes); // aligned copy
    if (e.dtype === 'F32') out.set(name, { dtype: 'F32', shape: e.shape, data: new Float32Array(copy.buffer) });
    else if (e.dtype === 'I64') out.set(name, { dtype: 'I64', shape: e.shape, data: new BigInt64Array(copy.buffer) });
    else throw new Error(`${file}: tensor ${name} has dtype ${e.dtype}; the benchmark reads only F32 and I64`);
  }
  return out;
}
