// Reads golden tensors (safetensors written by the Python reference) and compares against them,
// printing the max abs difference per tensor so a failure points at the stage that broke.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Tensor } from '../../src/tensor.js';
import { readTensorBytes } from '../../src/weights/dtype.js';
import { openSafetensors } from '../../src/weights/safetensors.js';

export const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');

export class Goldens {
  private readonly refs;
  constructor(readonly file: string) {
    this.refs = openSafetensors(file);
  }

  has(name: string): boolean {
    return this.refs.has(name);
  }

  /** The golden names matching `pattern`, in numeric order of their last path element where it is one. */
  names(pattern: RegExp): string[] {
    const last = (n: string) => Number(n.slice(n.lastIndexOf('/') + 1));
    return [...this.refs.keys()].filter((n) => pattern.test(n)).sort((a, b) => last(a) - last(b) || a.localeCompare(b));
  }

  get(name: string): Tensor {
    const ref = this.refs.get(name);
    if (!ref) throw new Error(`${this.file}: no golden tensor ${name}`);
    const bytes = readTensorBytes(ref);
    const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    switch (ref.dtype) {
      case 'F32': return new Tensor('float32', new Float32Array(buf), ref.shape);
      case 'I64': return new Tensor('int64', new BigInt64Array(buf), ref.shape);
      case 'U8': return new Tensor('uint8', new Uint8Array(buf), ref.shape);
      case 'F64': return new Tensor('float64', new Float64Array(buf), ref.shape);
      default: throw new Error(`unexpected golden dtype ${ref.dtype}`);
    }
  }

  /** Concatenates [1, ...] tensors along dim 0. */
  concat(names: string[]): Tensor {
    const parts = names.map((n) => this.get(n));
    const data = new Float32Array(parts.reduce((s, p) => s + p.data.length, 0));
    let o = 0;
    for (const p of parts) { data.set(p.data as Float32Array, o); o += p.data.length; }
    return new Tensor('float32', data, [parts.length, ...parts[0]!.dims.slice(1)]);
  }
}

/** Max abs differences seen, per tensor family (for the README's table). */
export const maxDiffByFamily = new Map<string, number>();

/** "single/outputs/text_model_output/hidden_states/1" -> "outputs/text_model_output/hidden_states" */
function family(name: string): string {
  return name.split('/').slice(1).filter((part) => !/^\d+$/.test(part)).join('/');
}

/** Asserts same shape and max |a - b| <= tol; records and returns the max difference. */
export function assertClose(actual: Tensor, expected: Tensor, tol: number, name: string): number {
  assert.deepEqual([...actual.dims], [...expected.dims], `${name}: shape [${actual.dims}] vs golden [${expected.dims}]`);
  const a = actual.data as Float32Array;
  const b = expected.data as Float32Array;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= max)) max = d; // NaN propagates
  }
  const fam = family(name);
  maxDiffByFamily.set(fam, Math.max(maxDiffByFamily.get(fam) ?? 0, max));
  assert.ok(max <= tol, `${name}: max abs diff ${max.toExponential(2)} > ${tol} (first values ${[...a.slice(0, 4)]} vs ${[...b.slice(0, 4)]})`);
  return max;
}

/** Rows [start, end) of a [B, ...] tensor. */
export function rows(t: Tensor, start: number, end: number): Tensor {
  const per = t.data.length / t.dims[0]!;
  const data = (t.data as Float32Array | BigInt64Array).slice(start * per, end * per);
  return new Tensor(t.type as 'float32', data as Float32Array, [end - start, ...t.dims.slice(1)]);
}

export function printDiffTable(title: string): void {
  const lines = [...maxDiffByFamily.entries()].sort().map(([k, v]) => `  ${k.padEnd(60)} ${v.toExponential(2)}`);
  console.log(`${title}\n${lines.join('\n')}`);
}
