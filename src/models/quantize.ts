// dtype "q8": Linear weights as int8, and the scheme that names how (q8Scheme). The default scheme
// is batch-invariant and the same on every CPU and in onnxruntime-web: each row (token) of a Linear's
// input is quantized on its own (onnx/nn.ts's linear), so no row's numbers depend on another row, and
// the integer products stay inside int16 pair sums (no saturation on AVX2's vpmaddubsw, exact int32 on
// VNNI and WASM), so every engine computes the same integers.
// Which Linear layers: those the graph asks for in int8 (modeling_altclip.ts decides; GraphBuilder's
// `quantized`). Weights are computed once from the float checkpoint and cached as a safetensors file in
// the graph cache (graph_cache.ts), with a manifest naming its source files.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { AltCLIPConfig } from '../config.js';
import { resolveFile, type PretrainedOptions } from '../hub/index.js';
import { GraphBuilder, quantizedNames } from '../onnx/graph.js';
import { readTensorBytes } from '../weights/dtype.js';
import { writeSafetensors, type TensorSpec } from '../weights/safetensors_writer.js';
import { loadWeights, openSafetensors, type TensorRef, type Weights } from '../weights/index.js';
import { withCacheDir, writeManifest } from './graph_cache.js';
import { buildTextGraph, buildVisionGraph } from './modeling_altclip.js';

const FORMAT = 'altclip-q8-v5';

export type WeightBits = 7 | 8;

/**
 * What a q8 model computes: a property of the model, recorded wherever its vectors are kept (embed's
 * meta, the index's model identity), so that no index mixes two schemes.
 */
export interface Q8Scheme {
  /** The recorded name: two models give the same numbers (to float rounding) iff their names match. */
  name: string;
  /** Weights: symmetric int8 per output channel, |q| <= 2^(bits-1) - 1, zero point 0. */
  weightBits: WeightBits;
  /**
   * Activations: "row" = symmetric per row (token) of the Linear's input, scale max|x_row| / qmax,
   * stored as uint8 around a zero point of 2^(bits-1) (batch-invariant); "tensor" = onnxruntime's
   * DynamicQuantizeMatMul (asymmetric uint8 over the whole input: a row depends on its batch).
   */
  activations: 'row' | 'tensor';
  activationBits: WeightBits;
  /** The text encoder layers' attention projections in int8 too (else fp32). */
  textAttention: boolean;
  /** Outputs independent of the batch they are computed in (≤ float rounding; see BENCHMARKS.md). */
  batchInvariant: boolean;
  /** The same integers on every CPU and in onnxruntime-web (no int16 saturation anywhere). */
  portable: boolean;
}

/**
 * The schemes. Default: 8-bit weights x 7-bit row activations, the text encoder layers' attention
 * projections in fp32. The uint8 activations stay <= 127 and the weights >= -127, so a pair of
 * products (AVX2's vpmaddubsw sums two in int16) is at most 2 * 127 * 127 = 32258 < 32767: no
 * saturation on any x86 kernel, and VNNI / WASM (int32 sums) give the same integers. Full-size random
 * checkpoint, min cosine vs fp32 (BENCHMARKS.md): images 0.9992, texts 0.9980 (0.9944 with int8 text
 * attention, 0.9914 with w7a8, the other saturation-free split).
 * Opt-ins, by name only:
 * - "altclip-q8-w8a8-row-vnni-v1": 8-bit row activations, int8 text attention; batch-invariant and
 *   closer to fp32, but exact only where the CPU sums u8 x s8 products in int32 (VNNI); on an AVX2-only
 *   CPU its int16 pair sums saturate.
 * - "ort-dynamic-w8-vnni" / "ort-dynamic-w7": onnxruntime's DynamicQuantizeMatMul (per-tensor uint8
 *   activations), the schemes before issue 25: a row's vector depends on its batch.
 */
export const Q8_SCHEMES: Readonly<Record<string, Q8Scheme>> = Object.freeze({
  'altclip-q8-w8a7-row-v1': { name: 'altclip-q8-w8a7-row-v1', weightBits: 8, activations: 'row', activationBits: 7, textAttention: false, batchInvariant: true, portable: true },
  'altclip-q8-w8a8-row-vnni-v1': { name: 'altclip-q8-w8a8-row-vnni-v1', weightBits: 8, activations: 'row', activationBits: 8, textAttention: true, batchInvariant: true, portable: false },
  'ort-dynamic-w8-vnni': { name: 'ort-dynamic-w8-vnni', weightBits: 8, activations: 'tensor', activationBits: 8, textAttention: true, batchInvariant: false, portable: false },
  'ort-dynamic-w7': { name: 'ort-dynamic-w7', weightBits: 7, activations: 'tensor', activationBits: 8, textAttention: false, batchInvariant: false, portable: true },
});

export const DEFAULT_Q8_SCHEME = 'altclip-q8-w8a7-row-v1';

/**
 * The q8 scheme models made now use: the default, or `ALTCLIP_Q8_SCHEME=<name>` (an explicit opt-in,
 * e.g. the faster per-tensor "ort-dynamic-w8-vnni" on a VNNI CPU). Never chosen by the CPU.
 */
export function q8Scheme(env: NodeJS.ProcessEnv = process.env): Q8Scheme {
  const name = env.ALTCLIP_Q8_SCHEME || DEFAULT_Q8_SCHEME;
  const scheme = Object.hasOwn(Q8_SCHEMES, name) ? Q8_SCHEMES[name] : undefined;
  if (!scheme) {
    throw new Error(`ALTCLIP_Q8_SCHEME: unknown q8 scheme ${JSON.stringify(name)} (known: ${Object.keys(Q8_SCHEMES).join(', ')})`);
  }
  return scheme;
}

/** The scheme's name (what embed's meta and the index's model identity record for dtype "q8"). */
export function q8SchemeName(env: NodeJS.ProcessEnv = process.env): string {
  return q8Scheme(env).name;
}

let vnni: boolean | undefined;

/** avx512_vnni or avx_vnni among the CPU flags (Linux x64's /proc/cpuinfo); false when unsure. Only
 * reported (benchmarks, the opt-in scheme's warning): the default scheme never depends on it. */
export function cpuHasVnni(): boolean {
  if (vnni === undefined) {
    vnni = false;
    if (process.platform === 'linux' && process.arch === 'x64') {
      try {
        vnni = hasVnniFlag(fs.readFileSync('/proc/cpuinfo', 'utf8'));
      } catch { /* unreadable: unsure */ }
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
 * (63 for 7 bits, 127 for 8; see Q8Scheme).
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
 * weights `names`, `bits`-bit (the scheme's weightBits), cached under `<cache>/q8/<id>-w<bits>.safetensors`
 * (graph_cache.ts's folder, with its fallbacks).
 */
export function quantizedWeights(weights: Weights, names: string[], cacheDir: string | undefined,
  bits: WeightBits): Map<string, TensorRef> {
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

// ---------------------------------------------------------------------------------------------
// q8 checkpoints (`altclip convert --dtype q8`): the quantized Linear weights stored as
// `<name>.q8` (int8 [in, out]) and `<name>.q8_scale` (float32 [out]) in place of `<name>`, every other
// tensor as it was, and the scheme's name in the safetensors metadata. Loading one quantizes nothing.

/** The safetensors metadata key naming a q8 checkpoint's scheme. */
export const Q8_SCHEME_METADATA = 'altclip_q8_scheme';

/** A safetensors file's `__metadata__` (an empty object when it has none). */
function safetensorsMetadata(file: string): Record<string, string> {
  const fd = fs.openSync(file, 'r');
  try {
    const len = Buffer.alloc(8);
    fs.readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    const header = Buffer.alloc(n);
    fs.readSync(fd, header, 0, n, 8); // openSafetensors has already checked the header
    const meta = (JSON.parse(header.toString('utf8')) as { __metadata__?: Record<string, string> }).__metadata__;
    return meta ?? {};
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The scheme of a q8 checkpoint (its weights hold `<name>.q8` tensors), from its metadata; undefined
 * for a float checkpoint. A q8 checkpoint without a known scheme is refused.
 */
export function prequantizedScheme(weights: Weights, source: string): Q8Scheme | undefined {
  const q = [...weights.tensors.values()].find((r) => r.name.endsWith('.q8'));
  if (!q) return undefined;
  const name = q.data ? undefined : safetensorsMetadata(q.file)[Q8_SCHEME_METADATA];
  const scheme = name !== undefined && Object.hasOwn(Q8_SCHEMES, name) ? Q8_SCHEMES[name] : undefined;
  if (!scheme) {
    throw new Error(`${source}: holds int8 weights (${q.name}) but ${name === undefined ? `no q8 scheme in its metadata (${Q8_SCHEME_METADATA})`
      : `the unknown q8 scheme ${JSON.stringify(name)} (known: ${Object.keys(Q8_SCHEMES).join(', ')})`}`);
  }
  return scheme;
}

/**
 * The q8 scheme `pathOrRepoId` loads with in dtype "q8": a q8 checkpoint's own, else q8Scheme() (what
 * a record of its vectors must name). Reads the weights' headers only.
 */
export async function q8SchemeOf(pathOrRepoId: string, options: PretrainedOptions = {}): Promise<Q8Scheme> {
  return prequantizedScheme(await loadWeights(pathOrRepoId, options), pathOrRepoId) ?? q8Scheme();
}

/** The [out, in] Linear weights `scheme`'s graphs take in int8 (what modeling_altclip.ts asks for). */
export function q8LinearNames(config: AltCLIPConfig, tensors: ReadonlyMap<string, TensorRef>, scheme: Q8Scheme): string[] {
  const source = { get: (name: string) => tensors.get(name) };
  const variant = { full: false, quantized: true, weightBits: scheme.weightBits, int8TextAttention: scheme.textAttention };
  const text = new GraphBuilder('text-q8', source);
  buildTextGraph(text, config.textConfig, variant, { prefix: 'text_model', projectionDim: config.projectionDim });
  const vision = new GraphBuilder('vision-q8', source);
  buildVisionGraph(vision, config.visionConfig, variant, { prefix: 'vision_model', projectionDim: config.projectionDim });
  return [...new Set([...text.quantized, ...vision.quantized])].sort();
}

/** The files of a hub model folder besides the weights (those present are copied as they are). */
const CHECKPOINT_FILES = ['config.json', 'preprocessor_config.json', 'tokenizer_config.json', 'special_tokens_map.json',
  'sentencepiece.bpe.model', 'tokenizer.json', 'generation_config.json'];

export interface ConvertResult {
  out: string;
  scheme: string;
  quantized: number;
  tensors: number;
  bytes: number;
  files: string[];
}

/**
 * Writes a q8 checkpoint of `pathOrRepoId` to the folder `out` (hub layout: config, tokenizer and
 * preprocessor files, model.safetensors, README.md): the Linear weights `scheme` quantizes as int8 +
 * scales, computed exactly as quantize-at-load does, so it gives the same outputs.
 */
export async function convertToQ8(pathOrRepoId: string, out: string, options: PretrainedOptions & { scheme?: Q8Scheme } = {}): Promise<ConvertResult> {
  const scheme = options.scheme ?? q8Scheme();
  const config = await AltCLIPConfig.fromPretrained(pathOrRepoId, options);
  const weights = await loadWeights(pathOrRepoId, options);
  const already = prequantizedScheme(weights, pathOrRepoId);
  if (already) throw new Error(`${pathOrRepoId} is already a q8 checkpoint (scheme ${already.name})`);
  const names = new Set(q8LinearNames(config, weights.tensors, scheme));
  fs.mkdirSync(out, { recursive: true });
  const copied: string[] = [];
  for (const f of CHECKPOINT_FILES) {
    const file = await resolveFile(pathOrRepoId, f, { ...options, optional: true });
    if (!file) continue;
    fs.copyFileSync(file, path.join(out, f));
    copied.push(f);
  }
  const refs = [...weights.tensors.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const specs: TensorSpec[] = [];
  const source: (() => Uint8Array)[] = [];
  let current: { q: Int8Array; scale: Float32Array } | undefined;
  for (const ref of refs) {
    if (!names.has(ref.name)) {
      specs.push({ name: ref.name, dtype: ref.dtype, shape: ref.shape });
      source.push(() => readTensorBytes(ref));
      continue;
    }
    const [o, i] = ref.shape as [number, number];
    const [q, scale] = quantizedNames(ref.name);
    specs.push({ name: q, dtype: 'I8', shape: [i, o] }, { name: scale, dtype: 'F32', shape: [o] });
    source.push(() => {
      current = quantizeLinear(weights.readFloat32(ref.name), o, i, scheme.weightBits);
      return new Uint8Array(current.q.buffer);
    }, () => new Uint8Array(current!.scale.buffer));
  }
  const file = path.join(out, 'model.safetensors');
  writeSafetensors(file, specs, (k) => source[k]!(), { format: 'pt', [Q8_SCHEME_METADATA]: scheme.name });
  fs.writeFileSync(path.join(out, 'README.md'), `---
library_name: altclip
tags: [altclip, clip, int8]
---
# ${path.basename(path.resolve(out))}: AltCLIP with int8 weights (q8 scheme \`${scheme.name}\`)

Converted from \`${pathOrRepoId}\` by \`altclip convert --dtype q8\`: ${names.size} Linear weights as int8 +
per-output-channel scales (\`<name>.q8\`, \`<name>.q8_scale\`), every other tensor as it was. Load it with
\`AltCLIPModel.fromPretrained(<this folder or repo>, { dtype: "q8" })\` (Node or the browser build).
`);
  return { out, scheme: scheme.name, quantized: names.size, tensors: specs.length, bytes: fs.statSync(file).size, files: [...copied, 'model.safetensors', 'README.md'] };
}
