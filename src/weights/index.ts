// Checkpoint files -> TensorRef map. Tensor data stays in the files: consumers point ONNX external
// data at (file, offset, byteLength), or read one tensor at a time.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { resolveFile, type PretrainedOptions } from '../hub/index.js';
import { firstNonFinite, MAX_READ, readTensorBytes, toFloat32, type TensorRef } from './dtype.js';
import { openSafetensors } from './safetensors.js';
import { openTorchBin } from './torch.js';
import { describe, parseJsonBounded } from '../untrusted.js';

export { DTYPE_BITS, firstNonFinite, readTensorBytes, toFloat32, type DType, type TensorRef } from './dtype.js';
export { openSafetensors } from './safetensors.js';
export { openTorchBin } from './torch.js';

export interface Weights {
  tensors: Map<string, TensorRef>;
  /** Every file referenced by a tensor (absolute real paths). */
  files: string[];
  /** A (small) tensor's values as float32, from any float dtype (F16/BF16/F64 converted). */
  readFloat32(name: string): Float32Array;
}

/** Searched in this order, as transformers' `from_pretrained` does (safetensors first). */
const WEIGHT_FILES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'];

/** Index files list tens of thousands of names at most; refuse absurd ones. */
const MAX_INDEX_BYTES = 64 * 1024 * 1024;

export async function loadWeights(pathOrRepoId: string, options: PretrainedOptions = {}): Promise<Weights> {
  for (const filename of WEIGHT_FILES) {
    const file = await resolveFile(pathOrRepoId, filename, { ...options, optional: true });
    if (!file) continue;
    const open = filename.startsWith('model.safetensors') ? openSafetensors : openTorchBin;
    const tensors = filename.endsWith('.index.json') ? await openSharded(pathOrRepoId, file, open, options) : open(file);
    return makeWeights(tensors);
  }
  const where = options.subfolder ? `${pathOrRepoId} (subfolder ${options.subfolder})` : pathOrRepoId;
  throw new Error(`${where}: no model weights found (looked for ${WEIGHT_FILES.join(', ')})`);
}

export function makeWeights(tensors: Map<string, TensorRef>): Weights {
  return {
    tensors,
    // (an in-memory tensor's data may be computed on first access: tell them apart without it)
    files: [...new Set([...tensors.values()].filter((t) => !Object.hasOwn(t, 'data')).map((t) => t.file))],
    readFloat32(name: string): Float32Array {
      const ref = tensors.get(name);
      if (!ref) throw new Error(`no tensor named ${name} in the weights (${[...new Set([...tensors.values()].map((t) => t.file))].join(', ')})`);
      const bytes = readTensorBytes(ref);
      let values: Float32Array;
      // bytes read from the file are a fresh, aligned buffer: F32 needs no second copy
      if (ref.dtype === 'F32' && !ref.data) values = new Float32Array(bytes.buffer, 0, ref.byteLength / 4);
      else {
        try {
          values = toFloat32(ref.dtype, bytes);
        } catch (e) {
          throw new Error(`${ref.file}: tensor ${name}: ${(e as Error).message}`);
        }
      }
      // Values we read ourselves are checked: safetensors and legacy .bin carry no checksum, and a
      // NaN here (logit_scale, position embeddings, q8 sources) would only show as NaN features.
      const bad = firstNonFinite('F32', new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
      if (bad >= 0) throw new Error(`${ref.file}: tensor ${name} holds a non-finite value (${values[bad]}) at element ${bad}`);
      return values;
    },
  };
}

/** Chunk for scanning tensors in place (a multiple of every element size). */
const SCAN_CHUNK = 16 * 1024 * 1024;

/**
 * The float tensors holding a NaN or infinity (name and first bad element), read in chunks from
 * their files: what to call when a model's outputs are not finite, to say which weight is to blame.
 * Reads every byte of the checkpoint (see BENCHMARKS.md for its cost on the full-size model).
 */
export function findNonFinite(weights: Pick<Weights, 'tensors'>, names: Iterable<string> = weights.tensors.keys()): { name: string; file: string; index: number }[] {
  const found: { name: string; file: string; index: number }[] = [];
  const buf = Buffer.allocUnsafe(SCAN_CHUNK);
  for (const name of names) {
    const ref = weights.tensors.get(name);
    if (!ref || !['F32', 'F16', 'BF16', 'F64'].includes(ref.dtype)) continue;
    const itemsize = ref.dtype === 'F64' ? 8 : ref.dtype === 'F32' ? 4 : 2;
    if (Object.hasOwn(ref, 'data')) {
      const i = firstNonFinite(ref.dtype, ref.data!);
      if (i >= 0) found.push({ name, file: ref.file, index: i });
      continue;
    }
    const fd = fs.openSync(ref.file, 'r');
    try {
      for (let done = 0; done < ref.byteLength;) {
        const got = fs.readSync(fd, buf, 0, Math.min(SCAN_CHUNK, MAX_READ, ref.byteLength - done), ref.offset + done);
        if (got === 0) throw new Error(`${ref.file}: file ends inside tensor ${name} (truncated since it was opened?)`);
        const i = firstNonFinite(ref.dtype, buf.subarray(0, got - (got % itemsize)));
        if (i >= 0) {
          found.push({ name, file: ref.file, index: done / itemsize + i });
          break;
        }
        done += got - (got % itemsize);
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  return found;
}

/**
 * A sharded checkpoint: `{"metadata": {...}, "weight_map": {tensor name: shard file}}` (what
 * transformers' `save_pretrained` writes). Each shard is resolved like the index (same model and
 * subfolder); every listed tensor must be in its shard, and no tensor may be in two shards.
 */
async function openSharded(
  pathOrRepoId: string,
  indexFile: string,
  open: (file: string) => Map<string, TensorRef>,
  options: PretrainedOptions,
): Promise<Map<string, TensorRef>> {
  const fail = (problem: string): never => {
    throw new Error(`${indexFile}: invalid weights index: ${problem}`);
  };
  if (fs.statSync(indexFile).size > MAX_INDEX_BYTES) fail('over 64 MB');
  let index: unknown;
  try {
    index = parseJsonBounded(fs.readFileSync(indexFile, 'utf8'), 8); // real ones nest 2 levels
  } catch (e) {
    fail(`not valid JSON (${(e as Error).message})`);
  }
  const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) fail('no "weight_map" object');
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof shard !== 'string') fail(`${describe(name)} maps to ${describe(shard)}, not a file name`);
    const s = shard as string;
    if (s === '' || path.isAbsolute(s) || s.includes('\\') || s.split('/').some((seg) => seg === '..' || seg === '.' || seg === '')) {
      fail(`shard name ${describe(s)} is not a plain relative file name`);
    }
    byShard.set(s, [...(byShard.get(s) ?? []), name]);
  }

  const tensors = new Map<string, TensorRef>();
  const owner = new Map<string, string>();
  for (const [shard, names] of byShard) {
    const file = (await resolveFile(pathOrRepoId, shard, options)) as string;
    const shardTensors = open(file);
    const missing = names.filter((n) => !shardTensors.has(n));
    if (missing.length) fail(`shard ${shard} lacks ${missing.length} tensor(s) the index puts there: ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''}`);
    // As transformers does, every tensor of a shard is loaded, listed or not.
    for (const [name, ref] of shardTensors) {
      const other = owner.get(name);
      if (other) fail(`tensor ${name} is in both ${other} and ${shard}`);
      owner.set(name, shard);
      tensors.set(name, ref);
    }
  }
  return tensors;
}
