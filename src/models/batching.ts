// How the model classes cut a big call into runs of the towers (each run's outputs are the same as
// in one big run: tested in model.test.ts). Text: rows grouped by length so that short texts are not
// padded to long ones, and runs of at most TEXT_TOKENS_PER_RUN tokens. Images: a few per run.
import { Tensor } from '../tensor.js';

/** Each row's length without its trailing padding (mask 0), at least 1: [batch, seq] int64 mask. */
export function unpaddedLengths(mask: BigInt64Array, batch: number, seq: number): number[] {
  return Array.from({ length: batch }, (_, b) => {
    let n = seq;
    while (n > 1 && mask[b * seq + n - 1] === 0n) n--;
    return n;
  });
}

/**
 * What one extra run of the text tower costs, in tokens: a run streams every weight once whatever
 * its size. Measured on the full-size tower (2 cores, fp32): 59 ms for 1 text of 8 tokens, then
 * ~3.9 ms per token whether the tokens come as 1x128 or 8x16; the fixed part is ~7 tokens' worth.
 */
const RUN_COST_TOKENS = 16;

/**
 * Tokens per run of the text tower at most (bounds the activations of a big call: 1000 texts of 77
 * tokens in one run would hold ~1.3 GB of MLP activations). Costs nothing: the per-token time is
 * flat from 128 to 512 tokens (3.8-4.0 ms on the full-size tower).
 */
const TEXT_TOKENS_PER_RUN = 512;
const rowsPerRun = (length: number) => Math.max(1, Math.floor(TEXT_TOKENS_PER_RUN / length));

/**
 * Runs of rows (indices into `lengths`) for getTextFeatures: rows sorted by length, cut where that
 * saves work, each cut cut again into runs of at most TEXT_TOKENS_PER_RUN tokens; a run costs
 * RUN_COST_TOKENS + its rows x its longest length (the padding it computes). Optimal for that cost
 * (dynamic programming over the distinct lengths).
 */
export function lengthGroups(lengths: number[]): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[a]! - lengths[b]! || a - b);
  const counts = new Map<number, number>();
  for (const l of lengths) counts.set(l, (counts.get(l) ?? 0) + 1);
  const distinct = [...counts.keys()].sort((a, b) => a - b);
  const prefix = [0]; // prefix[k]: rows shorter than distinct[k]
  for (const l of distinct) prefix.push(prefix[prefix.length - 1]! + counts.get(l)!);
  // best[j]: least cost of the rows with the j shortest lengths; start[j]: where its last cut starts
  const best = [0];
  const start = [0];
  for (let j = 1; j <= distinct.length; j++) {
    best[j] = Infinity;
    const length = distinct[j - 1]!;
    for (let i = 0; i < j; i++) {
      const rows = prefix[j]! - prefix[i]!;
      const cost = best[i]! + Math.ceil(rows / rowsPerRun(length)) * RUN_COST_TOKENS + rows * length;
      if (cost < best[j]!) { best[j] = cost; start[j] = i; }
    }
  }
  const runs: number[][] = [];
  for (let j = distinct.length; j > 0; j = start[j]!) {
    const rows = order.slice(prefix[start[j]!]!, prefix[j]!);
    const per = rowsPerRun(distinct[j - 1]!);
    const chunks = [];
    for (let k = 0; k < rows.length; k += per) chunks.push(rows.slice(k, k + per));
    runs.unshift(...chunks);
  }
  return runs;
}

/**
 * Image tokens per run of the vision tower. Big batches are slower per image: a batch of 8 at 224
 * (2056 tokens) keeps ~33 MB of MLP activations in flight, which falls out of the cache. Measured on
 * the full-size tower (2 cores): 8 images as 1x8 / 4x2 / 8x1 runs took 4.79 / 4.49 / 4.69 s in q8,
 * 8.89-9.10 / 8.63-8.72 / 8.58-8.65 s in fp32; so runs of ~2 images at 224 (fewer tokens: more images).
 */
const IMAGE_TOKENS_PER_RUN = 768;

/** Images per run of the vision tower for images of `tokens` tokens (patches + class token). */
export const imagesPerRun = (tokens: number): number => Math.max(1, Math.floor(IMAGE_TOKENS_PER_RUN / tokens));

/** Rows [start, end) of a batch-first tensor (a copy: sessions take whole buffers). */
export function batchSlice(t: Tensor, start: number, end: number): Tensor {
  const row = t.dims.slice(1).reduce((a, b) => a * b, 1);
  const data = t.data as Float32Array;
  return new Tensor(t.type as 'float32', data.slice(start * row, end * row), [end - start, ...t.dims.slice(1)]);
}

/** Batch-first float tensors stacked along the batch dimension. */
export function concatBatch(parts: Tensor[]): Tensor {
  const total = parts.reduce((n, p) => n + (p.data as Float32Array).length, 0);
  const data = new Float32Array(total);
  let offset = 0;
  for (const p of parts) {
    data.set(p.data as Float32Array, offset);
    offset += (p.data as Float32Array).length;
  }
  return new Tensor('float32', data, [parts.reduce((n, p) => n + p.dims[0]!, 0), ...parts[0]!.dims.slice(1)]);
}
