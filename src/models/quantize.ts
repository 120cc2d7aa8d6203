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
 * Weight bits: 7 (|q| <= 63, ORT's `reduce_range`) unless the CPU has VNNI. On x86 CPUs without
 * VNNI, onnxruntime's u8 x s8 kernels (MLAS, AVX2) sum pairs of products in int16 (vpmaddubsw),
 * which saturates for 8-bit weights (2 * 255 * 127 > 32767): with 8-bit weights the fixtures'
 * embedding cosine vs fp32 fell to 0.985 on such a CPU; with 7 bits it is >= 0.999 everywhere.
 * With AVX512-VNNI or AVX-VNNI, MLAS picks its vpdpbusd kernels, which accumulate u8 x s8 products
 * straight into int32 (no int16 step, no saturation), so the full 8 bits (|q| <= 127) are safe there
 * (measured on a Zen 5 with AVX-512 VNNI: fixtures cosine vs fp32 0.99989 vs 0.99912 with 7 bits).
 * Anything else (not Linux, no /proc/cpuinfo, other architectures): 7 bits, which are right everywhere.
 * `ALTCLIP_Q8_BITS=7|8` forces the choice (tests, benchmarks). The bits are part of the cached
 * file's name and id, so a cache made with one choice is never used with the other.
 */
export type WeightBits = 7 | 8;

export function q8WeightBits(env: NodeJS.ProcessEnv = process.env): WeightBits {
  const forced = env.ALTCLIP_Q8_BITS;
  if (forced !== undefined && forced !== '') {
    if (forced === '7' || forced === '8') return Number(forced) as WeightBits;
    throw new Error(`ALTCLIP_Q8_BITS must be 7 or 8, got ${JSON.stringify(forced)}`);
  }
  return cpuHasVnni() ? 8 : 7;
}

/**
 * Whether the text tower's attention projections are int8 too (modeling_altclip.ts): only with 8-bit
 * weights, where the whole text tower in int8 keeps text-feature cosine vs fp32 >= 0.996 (7-bit: 0.990).
 * `ALTCLIP_Q8_TEXT_ATTENTION=0` keeps them in fp32 (bench/ab_q8.ts compares the two).
 */
export function q8TextAttention(bits: WeightBits, env: NodeJS.ProcessEnv = process.env): boolean {
  return bits === 8 && env.ALTCLIP_Q8_TEXT_ATTENTION !== '0';
}

let vnni: boolean | undefined;

/** avx512_vnni or avx_vnni among the CPU flags (Linux x64's /proc/cpuinfo); false when unsure. */
export function cpuHasVnni(): boolean {
  if (vnni === undefined) {
    vnni = false;
    if (process.platform === 'linux' && process.arch === 'x64') {
      try {
        vnni = hasVnniFlag(fs.readFileSync('/proc/cpuinfo', 'utf8'));
      } catch { /* unreadable: 7 bits */ }
    }
  }
  return vnni;
}

/** Every processor's `flags` line names avx512_vnni or avx_vnni (a mixed machine counts as without). */
export function hasVnniFlag(cpuinfo: string): boolean {
  const lines = [...cpuinfo.matchAll(/^flags\s*:(.*)$/gm)].map((m) => m[1]!.trim().split(/\s+/));
  return lines.length > 0 && lines.every((f) => f.includes('avx512_vnni') || f.includes('avx_vnni'));
}

/** |q| <= qmax for `bits`-bit symmetric weights. */
export const qmaxOf = (bits: WeightBits): number => (bits === 8 ? 127 : 63);

/** 1.5 * 2^52: (x + ROUND) - ROUND is x rounded to an integer (ties to even), without a branch. */
const ROUND = 6755399441055744.0;

/**
 * Symmetric per-output-channel int8 of a [out, in] weight, transposed to [in, out] as
 * DynamicQuantizeMatMul's B: q = round(w / scale) (halves away from zero), scale = max|w[o, :]| / qmax
 * (63 for 7 bits, 127 for 8; see q8WeightBits).
 * The rounding is the branch-free kind: Math.sign(x) * Math.round(Math.abs(x)) gives the same
 * numbers ~4x slower on real weights, whose random signs defeat branch prediction.
 */
export function quantizeLinear(w: Float32Array, out: number, inFeatures: number, bits: WeightBits = 7): { q: Int8Array; scale: Float32Array } {
  const qmax = qmaxOf(bits);
  const q = new Int8Array(out * inFeatures);
  const scale = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    let max = 0;
    const row = o * inFeatures;
    for (let i = 0; i < inFeatures; i++) {
      const a = Math.abs(w[row + i]!);
      if (a > max) max = a;
    }
    const s = max > 0 ? max / qmax : 1;
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
 * weights `names`, `bits`-bit (default: q8WeightBits()), cached under `<cache>/q8/<id>-w<bits>.safetensors`
 * (graph_cache.ts's folder, with its fallbacks).
 */
export function quantizedWeights(weights: Weights, names: string[], cacheDir: string | undefined,
  bits: WeightBits = q8WeightBits()): Map<string, TensorRef> {
  names = [...names].sort();
  const id = createHash('sha256').update(`${FORMAT}:w${bits}`);
  for (const f of weights.files) {
    const s = fs.statSync(f);
    id.update(`${f}:${s.size}:${s.mtimeMs}:${s.ino}\n`);
  }
  id.update(names.join('\n'));
  const refs = withCacheDir(cacheDir, 'q8 weights', (root) => {
    const file = path.join(root, 'q8', `${id.digest('hex').slice(0, 24)}-w${bits}.safetensors`);
    if (!fs.existsSync(file)) {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      writeQuantized(file, weights, names, bits);
    }
    writeManifest(file.replace(/\.safetensors$/, '.json'), weights.files);
    return openSafetensors(file);
  });
  if (!refs) throw new Error('dtype "q8": no writable cache folder for the int8 weights (see the warning); use dtype "fp32" or set graphCacheDir');
  return refs;
}

function writeQuantized(file: string, weights: Weights, names: string[], bits: WeightBits): void {
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
        current = quantizeLinear(weights.readFloat32(n), out, inFeatures, bits);
        return new Uint8Array(current.q.buffer);
      case 1:
        return new Uint8Array(current!.scale.buffer);
      default:
        return new Uint8Array(out);
    }
  }, { format: FORMAT, weight_bits: String(bits) });
}
