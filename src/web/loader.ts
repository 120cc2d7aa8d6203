// A checkpoint in the page: the file's directory (safetensors header, or the .bin's zip directory
// and pickle) read by Range requests and parsed by the same code as in Node (weights/ through
// range_fs), then every tensor fetched by Range (neighbours in one request), each kept as a buffer
// of its own. With dtype "q8", each quantized Linear weight is quantized as it arrives and only
// its int8 copy is kept (the float32 bytes never pile up).
import { openSafetensors } from '../weights/safetensors.js';
import { openTorchBin } from '../weights/torch.js';
import { toFloat32 } from '../weights/dtype.js';
import { makeWeights, type TensorRef, type Weights } from '../weights/index.js';
import { Fetcher, NotFound } from './fetcher.js';
import { q8Scheme, quantizeLinear, setQuantizedWeights } from './quantize.js';
import { addRange, mountBytes, mountRemote, withRanges } from './range_fs.js';

/** What loading is doing: `loaded` of `total` bytes of the weights (download), sessions (build). */
export interface LoadProgress {
  stage: 'download' | 'build';
  loaded: number;
  total: number;
  /** The file (download) or the graph (build). */
  file?: string;
}

/** Bytes per Range request at most (neighbouring tensors are fetched together up to this). */
const REQUEST_BYTES = 64 * 1024 * 1024;
/** Tensors this close are fetched in one request, the bytes between them dropped (zip entries' headers in a .bin). */
const GAP_BYTES = 64 * 1024;
/** The first request of a weights file: holds the header / directory of small checkpoints. */
const HEAD_BYTES = 256 * 1024;

const WEIGHT_FILES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'];

/** Per-tensor virtual files: `<file url>#<tensor name>`. */
const tensorPath = (fileUrl: string, name: string) => `${fileUrl}#${name}`;

/** Parses one weights file's directory through Range requests (bytes land in range_fs). */
async function openRemote(fetcher: Fetcher, file: string, head: { size: number; bytes: Uint8Array }): Promise<Map<string, TensorRef>> {
  const url = fetcher.url(file);
  mountRemote(url, head.size);
  addRange(url, 0, head.bytes);
  const open = file.endsWith('.safetensors') ? openSafetensors : openTorchBin;
  return withRanges(() => open(url), (_f, start, end) => fetcher.range(file, start, end));
}

/** The shards of a sharded checkpoint (transformers' `{"weight_map": {tensor: shard file}}`). */
function shardNames(indexFile: string, bytes: Uint8Array): string[] {
  let index: unknown;
  try {
    index = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new Error(`${indexFile}: invalid weights index: not valid JSON (${(e as Error).message})`);
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new Error(`${indexFile}: invalid weights index: no "weight_map" object`);
  const shards = new Set<string>();
  for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard === '' || shard.startsWith('/') || shard.split('/').some((s) => s === '..' || s === '.' || s === '')) {
      throw new Error(`${indexFile}: invalid weights index: "${name}" maps to ${JSON.stringify(shard)}, not a plain relative file name`);
    }
    shards.add(shard);
  }
  return [...shards];
}

/** The checkpoint's tensors (directory only), as transformers looks for them: safetensors first. */
async function openCheckpoint(fetcher: Fetcher): Promise<{ files: Map<string, Map<string, TensorRef>> }> {
  for (const file of WEIGHT_FILES) {
    if (file.endsWith('.index.json')) {
      const index = await fetcher.file(file, true);
      if (!index) continue;
      const files = new Map<string, Map<string, TensorRef>>();
      for (const shard of shardNames(fetcher.url(file), index)) {
        const head = await fetcher.head(shard, HEAD_BYTES);
        if (!head) throw new NotFound(`${fetcher.url(shard)}: not found (listed in ${file})`);
        files.set(shard, await openRemote(fetcher, shard, head));
      }
      return { files };
    }
    const head = await fetcher.head(file, HEAD_BYTES);
    if (head) return { files: new Map([[file, await openRemote(fetcher, file, head)]]) };
  }
  throw new Error(`${fetcher.base}: no model weights found (looked for ${WEIGHT_FILES.join(', ')})`);
}

export interface LoadWeightsOptions {
  /**
   * dtype "q8": the Linear weights to quantize as they arrive, given the checkpoint's directory
   * (quantize.ts' linearsToQuantize: those the graphs take in int8). Without it: fp32.
   */
  quantize?: (refs: ReadonlyMap<string, TensorRef>) => Set<string>;
  onProgress?: (p: LoadProgress) => void;
}

/**
 * Weights whose every tensor is in memory (one range_fs file each, offset 0), ready to be handed to
 * onnxruntime-web as external data. With q8, the quantized Linear weights' int8 tensors are
 * registered for the model (quantize.ts) and their float32 bytes are not kept.
 */
export async function loadWebWeights(fetcher: Fetcher, options: LoadWeightsOptions = {}): Promise<Weights> {
  const q8 = options.quantize !== undefined;
  // the cached int8 copies are the scheme's (its weight bits): another scheme's never match
  const q8Kind = `q8-${q8Scheme().name}`;
  const { files } = await openCheckpoint(fetcher);
  const tensors = new Map<string, TensorRef>();
  const quantized = new Map<string, TensorRef>();
  const seen = new Map<string, string>();
  for (const [file, refs] of files) {
    for (const name of refs.keys()) {
      const other = seen.get(name);
      if (other) throw new Error(`${fetcher.url(file)}: tensor ${name} is also in ${other}`);
      seen.set(name, file);
    }
  }
  const toQuantize = options.quantize?.(new Map([...files.values()].flatMap((refs) => [...refs]))) ?? new Set<string>();

  const total = [...files.values()].reduce((n, refs) => n + [...refs.values()].reduce((m, r) => m + r.byteLength, 0), 0);
  let loaded = 0;
  const progress = (file: string, n: number) => {
    loaded += n;
    options.onProgress?.({ stage: 'download', loaded, total, file });
  };

  for (const [file, refs] of files) {
    const url = fetcher.url(file);
    /** A tensor's bytes arrived: keep them (or their int8 copy), and say where they are. */
    const place = async (ref: TensorRef, bytes: Uint8Array, fromCache: boolean): Promise<void> => {
      const quantize = toQuantize.has(ref.name);
      tensors.set(ref.name, { ...ref, file: tensorPath(url, ref.name), offset: 0, data: undefined });
      if (!quantize) {
        mountBytes(tensorPath(url, ref.name), bytes);
        if (!fromCache) await fetcher.storeTensor(file, 'raw', ref.name, bytes);
        return;
      }
      // cached q8 entry: int8 [in, out] then float32 scales [out]
      const [out, inFeatures] = ref.shape as [number, number];
      let q: Uint8Array;
      let scale: Uint8Array;
      if (fromCache) {
        q = bytes.subarray(0, out * inFeatures);
        scale = bytes.slice(out * inFeatures);
      } else {
        const r = quantizeLinear(toFloat32(ref.dtype, bytes), out, inFeatures, q8Scheme().weightBits);
        q = new Uint8Array(r.q.buffer);
        scale = new Uint8Array(r.scale.buffer);
        const entry = new Uint8Array(q.length + scale.length);
        entry.set(q);
        entry.set(scale, q.length);
        await fetcher.storeTensor(file, q8Kind, ref.name, entry);
      }
      const add = (suffix: string, dtype: 'I8' | 'F32', shape: number[], data: Uint8Array) => {
        const path = tensorPath(url, `${ref.name}${suffix}`);
        mountBytes(path, data);
        quantized.set(`${ref.name}${suffix}`, { name: `${ref.name}${suffix}`, dtype, shape, file: path, offset: 0, byteLength: data.length });
      };
      add('.q8', 'I8', [inFeatures, out], q);
      add('.q8_scale', 'F32', [out], scale);
      add('.q8_zero_point', 'I8', [out], new Uint8Array(out));
    };

    // cached tensors first; the rest by Range, neighbours together
    const missing: TensorRef[] = [];
    for (const ref of refs.values()) {
      const kind = toQuantize.has(ref.name) ? q8Kind : 'raw';
      const bytes = ref.data ?? (await fetcher.cachedTensor(file, kind, ref.name));
      if (bytes) {
        await place(ref, bytes, kind === q8Kind || !!ref.data);
        progress(file, ref.byteLength);
      } else {
        missing.push(ref);
      }
    }
    missing.sort((a, b) => a.offset - b.offset);
    for (let i = 0; i < missing.length;) {
      const group = [missing[i]!];
      let end = missing[i]!.offset + missing[i]!.byteLength;
      while (i + group.length < missing.length) {
        const next = missing[i + group.length]!;
        if (next.offset < end || next.offset - end > GAP_BYTES || next.offset + next.byteLength - group[0]!.offset > REQUEST_BYTES) break;
        group.push(next);
        end = next.offset + next.byteLength;
      }
      i += group.length;
      const start = group[0]!.offset;
      const buffers = group.map((r) => new Uint8Array(r.byteLength));
      let k = 0;
      await fetcher.stream(file, start, end, (offset, chunk) => {
        let at = offset;
        let rest = chunk;
        let copied = 0;
        while (rest.length) {
          while (group[k]!.offset + group[k]!.byteLength <= at) k++;
          const ref = group[k]!;
          if (at < ref.offset) { // bytes between two tensors (a zip entry's header): skipped
            const skip = Math.min(rest.length, ref.offset - at);
            rest = rest.subarray(skip);
            at += skip;
            continue;
          }
          const n = Math.min(rest.length, ref.offset + ref.byteLength - at);
          buffers[k]!.set(rest.subarray(0, n), at - ref.offset);
          copied += n;
          rest = rest.subarray(n);
          at += n;
        }
        progress(file, copied);
      });
      for (let j = 0; j < group.length; j++) await place(group[j]!, buffers[j]!, false);
    }
  }
  const weights = makeWeights(tensors);
  if (q8) setQuantizedWeights(weights, quantized);
  return weights;
}
