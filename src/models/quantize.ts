// dtype "q8": Linear weights as int8, for com.microsoft.DynamicQuantizeMatMul (activations quantized
// to uint8 per call, as ORT's dynamic quantization does; weights symmetric per output channel).
// Which Linear layers: those the graph asks for in int8 (modeling_altclip.ts decides; GraphBuilder's
// `quantized`). Computed once from the float checkpoint and cached as a safetensors file in the graph
// cache (graph_cache.ts), with a manifest naming its source files.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { quantizedNames } from '../onnx/graph.js';
import { writeSafetensors, type TensorSpec } from '../weights/safetensors_writer.js';
import { openSafetensors, type TensorRef, type Weights } from '../weights/index.js';
import { withCacheDir, writeManifest } from './graph_cache.js';

const FORMAT = 'altclip-q8-v4';

/**
 * Weights use 7 bits (|q| <= 63), ORT's `reduce_range`: on x86 CPUs without AVX-512 VNNI the u8 x s8
 * kernels sum pairs of products in int16 (vpmaddubsw), which saturates for 8-bit weights
 * (2 * 255 * 127 > 32767). With 8-bit weights the fixtures' embedding cosine vs fp32 fell to 0.985 on
 * such a CPU; with 7 bits it is >= 0.999 everywhere.
 */
const QMAX = 63;

/** 1.5 * 2^52: (x + ROUND) - ROUND is x rounded to an integer (ties to even), without a branch. */
const ROUND = 6755399441055744.0;

/**
 * Symmetric per-output-channel int8 of a [out, in] weight, transposed to [in, out] as
 * DynamicQuantizeMatMul's B: q = round(w / scale) (halves away from zero), scale = max|w[o, :]| / QMAX.
 * The rounding is the branch-free kind: Math.sign(x) * Math.round(Math.abs(x)) gives the same
 * numbers ~4x slower on real weights, whose random signs defeat branch prediction.
 */
export function quantizeLinear(w: Float32Array, out: number, inFeatures: number): { q: Int8Array; scale: Float32Array } {
  const q = new Int8Array(out * inFeatures);
  const scale = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    let max = 0;
    const row = o * inFeatures;
    for (let i = 0; i < inFeatures; i++) {
      const a = Math.abs(w[row + i]!);
      if (a > max) max = a;
    }
    const s = max > 0 ? max / QMAX : 1;
    scale[o] = s;
    for (let i = 0; i < inFeatures; i++) {
      const x = w[row + i]! / s;
      let r = (x + ROUND) - ROUND;
      if (Math.abs(r - x) === 0.5) r = x < 0 ? Math.floor(x) : Math.ceil(x); // a tie: away from zero
      q[i * out + o] = r;
    }
  }
  return { q, scale };
}

/**
 * The q8 tensors (quantizedNames: `<name>.q8`, `.q8_scale`, `.q8_zero_point`) of the [out, in] Linear
 * weights `names`, cached under `<cache>/q8/` (graph_cache.ts's folder, with its fallbacks).
 */
export function quantizedWeights(weights: Weights, names: string[], cacheDir: string | undefined): Map<string, TensorRef> {
  names = [...names].sort();
  const id = createHash('sha256').update(FORMAT);
  for (const f of weights.files) {
    const s = fs.statSync(f);
    id.update(`${f}:${s.size}:${s.mtimeMs}:${s.ino}\n`);
  }
  id.update(names.join('\n'));
  const refs = withCacheDir(cacheDir, 'q8 weights', (root) => {
    const file = path.join(root, 'q8', `${id.digest('hex').slice(0, 24)}.safetensors`);
    if (!fs.existsSync(file)) {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      writeQuantized(file, weights, names);
    }
    writeManifest(file.replace(/\.safetensors$/, '.json'), weights.files);
    return openSafetensors(file);
  });
  if (!refs) throw new Error('dtype "q8": no writable cache folder for the int8 weights (see the warning); use dtype "fp32" or set graphCacheDir');
  return refs;
}

function writeQuantized(file: string, weights: Weights, names: string[]): void {
  const specs: TensorSpec[] = [];
  for (const n of names) {
    const [out, inFeatures] = weights.tensors.get(n)!.shape as [number, number];
    const [q, scale, zeroPoint] = quantizedNames(n);
    specs.push({ name: q, dtype: 'I8', shape: [inFeatures, out] }, { name: scale, dtype: 'F32', shape: [out] },
      { name: zeroPoint, dtype: 'I8', shape: [out] });
  }
  let current: { q: Int8Array; scale: Float32Array } | undefined;
  writeSafetensors(file, specs, (i) => {
    const n = names[Math.floor(i / 3)]!;
    const [out, inFeatures] = weights.tensors.get(n)!.shape as [number, number];
    switch (i % 3) {
      case 0:
        current = quantizeLinear(weights.readFloat32(n), out, inFeatures);
        return new Uint8Array(current.q.buffer);
      case 1:
        return new Uint8Array(current!.scale.buffer);
      default:
        return new Uint8Array(out);
    }
  }, { format: FORMAT });
}
