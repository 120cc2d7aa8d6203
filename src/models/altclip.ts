// The public model classes: AltCLIPModel, AltCLIPTextModel, AltCLIPVisionModel.
// Graphs come from modeling_altclip.ts; what transformers computes outside the towers (feature
// normalisation, logits, the contrastive loss, interpolate_pos_encoding) is done here.
import * as ort from 'onnxruntime-node';

import { AltCLIPConfig, AltCLIPTextConfig, AltCLIPVisionConfig } from '../config.js';
import type { PretrainedOptions } from '../hub/index.js';
import { GraphBuilder, type WeightSource } from '../onnx/graph.js';
import { Tensor } from '../tensor.js';
import { loadWeights, type TensorRef, type Weights } from '../weights/index.js';
import { buildTextGraph, buildVisionGraph, type GraphVariant } from './modeling_altclip.js';
import { quantizedWeights } from './quantize.js';
import { createSession, defaultGraphCacheDir, type Session, type SessionOptions } from './session.js';

export interface ModelOptions extends PretrainedOptions, SessionOptions {
  /**
   * Precision of the encoder layers' Linear weights: "fp32" (default, the checkpoint's values; fp16 /
   * bf16 checkpoints are computed in fp32) or "q8" (int8 weights quantized at load time and cached,
   * activations quantized dynamically; see quantize.ts).
   */
  dtype?: 'fp32' | 'q8';
}

export interface TowerOutput {
  lastHiddenState: Tensor;
  poolerOutput: Tensor;
  hiddenStates?: Tensor[];
  attentions?: Tensor[];
}

export interface AltCLIPOutput {
  loss?: Tensor;
  logitsPerImage: Tensor;
  logitsPerText: Tensor;
  textEmbeds: Tensor;
  imageEmbeds: Tensor;
  textModelOutput: TowerOutput;
  visionModelOutput: TowerOutput;
}

export interface TextInputs {
  inputIds: Tensor;
  attentionMask?: Tensor;
}

export interface VisionInputs {
  pixelValues: Tensor;
  interpolatePosEncoding?: boolean;
}

export interface OutputFlags {
  outputHiddenStates?: boolean;
  outputAttentions?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Input checks: the errors transformers gives, plus a few it would give later and less clearly.

function toInt64(t: Tensor, name: string): Tensor {
  if (t.type === 'int64') return t;
  if (t.type === 'int32' || t.type === 'uint8' || t.type === 'bool') {
    return new Tensor('int64', BigInt64Array.from(t.data as Int32Array, (v) => BigInt(v)), t.dims);
  }
  throw new Error(`${name} must be an int64 tensor, got ${t.type}`);
}

function checkTextInputs({ inputIds, attentionMask }: TextInputs, config: AltCLIPTextConfig): [Tensor, Tensor] {
  if (!(inputIds instanceof ort.Tensor)) throw new Error('inputIds must be a Tensor');
  if (inputIds.dims.length !== 2) {
    throw new Error(`inputIds must have shape [batch, sequence], got [${inputIds.dims}]`);
  }
  const ids = toInt64(inputIds, 'inputIds');
  const [batch, seq] = ids.dims as [number, number];
  if (seq > config.maxPositionEmbeddings - config.padTokenId - 1) {
    throw new Error(`inputIds has ${seq} tokens; this model takes at most ${config.maxPositionEmbeddings - config.padTokenId - 1}`);
  }
  for (const v of ids.data as BigInt64Array) {
    if (v < 0n || v >= BigInt(config.vocabSize)) {
      throw new Error(`inputIds holds id ${v}, outside the vocabulary [0, ${config.vocabSize})`);
    }
  }
  let mask: Tensor;
  if (attentionMask === undefined) {
    mask = new Tensor('int64', new BigInt64Array(batch * seq).fill(1n), [batch, seq]);
  } else {
    if (attentionMask.dims.length !== 2 || attentionMask.dims[0] !== batch || attentionMask.dims[1] !== seq) {
      throw new Error(`attentionMask has shape [${attentionMask.dims}], inputIds [${ids.dims}]: they must match`);
    }
    mask = toInt64(attentionMask, 'attentionMask');
  }
  return [ids, mask];
}

function checkPixelValues({ pixelValues, interpolatePosEncoding }: VisionInputs, config: AltCLIPVisionConfig): Tensor {
  if (!(pixelValues instanceof ort.Tensor)) throw new Error('pixelValues must be a Tensor');
  if (pixelValues.type !== 'float32') throw new Error(`pixelValues must be float32, got ${pixelValues.type}`);
  if (pixelValues.dims.length !== 4) {
    throw new Error(`pixelValues must have shape [batch, channels, height, width], got [${pixelValues.dims}]`);
  }
  const [, channels, height, width] = pixelValues.dims as number[];
  if (channels !== config.numChannels) {
    throw new Error(`pixelValues has ${channels} channels; the model expects ${config.numChannels}`);
  }
  if (!interpolatePosEncoding && (height !== config.imageSize || width !== config.imageSize)) {
    // transformers' CLIP embeddings raise this exact message
    throw new Error(`Input image size (${height}*${width}) doesn't match model (${config.imageSize}*${config.imageSize}).`);
  }
  if (height! < config.patchSize || width! < config.patchSize) {
    throw new Error(`pixelValues of ${height}x${width} is smaller than one ${config.patchSize}x${config.patchSize} patch`);
  }
  return pixelValues;
}

// ---------------------------------------------------------------------------------------------
// interpolate_pos_encoding (transformers >= 4.46): bicubic resize of the patch position grid.

/** torch's cubic convolution weights (A = -0.75) for the fractional offset t. */
function cubicWeights(t: number): [number, number, number, number] {
  const A = -0.75;
  const near = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1;
  const far = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return [far(t + 1), near(t), near(1 - t), far(2 - t)];
}

/**
 * nn.functional.interpolate(mode="bicubic", align_corners=False) of a [inH, inW, dim] grid to
 * [outH, outW, dim]: source = (dst + 0.5) * in / out - 0.5, indices clamped at the border.
 */
function bicubicResize(src: Float32Array, inH: number, inW: number, dim: number, outH: number, outW: number): Float32Array {
  const out = new Float32Array(outH * outW * dim);
  const taps = (outSize: number, inSize: number) => Array.from({ length: outSize }, (_, o) => {
    const real = (inSize / outSize) * (o + 0.5) - 0.5;
    const i0 = Math.floor(real);
    const idx = [-1, 0, 1, 2].map((k) => Math.min(Math.max(i0 + k, 0), inSize - 1));
    return { idx, w: cubicWeights(real - i0) };
  });
  const rows = taps(outH, inH);
  const cols = taps(outW, inW);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const o = (y * outW + x) * dim;
      for (let c = 0; c < dim; c++) {
        let acc = 0;
        for (let r = 0; r < 4; r++) {
          let row = 0;
          for (let k = 0; k < 4; k++) row += src[(rows[y]!.idx[r]! * inW + cols[x]!.idx[k]!) * dim + c]! * cols[x]!.w[k];
          acc += row * rows[y]!.w[r];
        }
        out[o + c] = acc;
      }
    }
  }
  return out;
}

/** AltCLIPVisionEmbeddings.interpolate_pos_encoding for an image of height x width. */
export function interpolatePositionEmbeddings(positionEmbedding: Float32Array, config: AltCLIPVisionConfig,
  height: number, width: number): Tensor {
  const dim = config.hiddenSize;
  const numPositions = positionEmbedding.length / dim - 1;
  const newH = Math.floor(height / config.patchSize);
  const newW = Math.floor(width / config.patchSize);
  if (newH * newW === numPositions && height === width) {
    return new Tensor('float32', positionEmbedding, [1, numPositions + 1, dim]);
  }
  const side = Math.floor(Math.sqrt(numPositions));
  const patches = bicubicResize(positionEmbedding.subarray(dim), side, side, dim, newH, newW);
  const out = new Float32Array((newH * newW + 1) * dim);
  out.set(positionEmbedding.subarray(0, dim));
  out.set(patches, dim);
  return new Tensor('float32', out, [1, newH * newW + 1, dim]);
}

// ---------------------------------------------------------------------------------------------
// Small tensor math done outside the graphs, as transformers does it after the towers.

function normalize(t: Tensor): Tensor {
  const [n, d] = t.dims as [number, number];
  const x = t.data as Float32Array;
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[i * d + j]! ** 2;
    const norm = Math.sqrt(s);
    for (let j = 0; j < d; j++) out[i * d + j] = x[i * d + j]! / norm;
  }
  return new Tensor('float32', out, [n, d]);
}

/** a [n, d] @ b[m, d]^T * scale -> [n, m] */
function matmulT(a: Tensor, b: Tensor, scale: number): Tensor {
  const [n, d] = a.dims as [number, number];
  const m = b.dims[0]!;
  const x = a.data as Float32Array;
  const y = b.data as Float32Array;
  const out = new Float32Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += x[i * d + k]! * y[j * d + k]!;
      out[i * m + j] = Math.fround(s) * scale;
    }
  }
  return new Tensor('float32', out, [n, m]);
}

function transpose(t: Tensor): Tensor {
  const [n, m] = t.dims as [number, number];
  const x = t.data as Float32Array;
  const out = new Float32Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) out[j * n + i] = x[i * m + j]!;
  return new Tensor('float32', out, [m, n]);
}

/** nn.functional.cross_entropy(logits, arange(n)), mean reduction. */
function contrastiveLoss(logits: Tensor): number {
  const [n, m] = logits.dims as [number, number];
  const x = logits.data as Float32Array;
  let total = 0;
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let j = 0; j < m; j++) max = Math.max(max, x[i * m + j]!);
    let sum = 0;
    for (let j = 0; j < m; j++) sum += Math.exp(x[i * m + j]! - max);
    total += max + Math.log(sum) - x[i * m + i]!;
  }
  return total / n;
}

// ---------------------------------------------------------------------------------------------
// Towers: a graph per (tower, variant), each with its own session, created on first use.

type Builder = (g: GraphBuilder, variant: GraphVariant) => void;

function checkDtype(options: ModelOptions): void {
  if (options.dtype !== undefined && options.dtype !== 'fp32' && options.dtype !== 'q8') {
    throw new Error(`dtype must be "fp32" or "q8", got ${JSON.stringify(options.dtype)}`);
  }
}

class Tower {
  private readonly sessions = new Map<string, Promise<Session>>();
  private q8?: Map<string, TensorRef>;

  constructor(
    private readonly name: string,
    private readonly build: Builder,
    private readonly weights: Weights,
    private readonly options: ModelOptions,
    private readonly source: string,
  ) {
    checkDtype(options);
  }

  /** Builds the graph (missing / mis-shaped weights are collected in its `problems`). */
  graph(requested: GraphVariant): GraphBuilder {
    const variant = this.withDtype(requested);
    const g = new GraphBuilder(this.graphName(variant), this.weightSource());
    this.build(g, variant);
    return g;
  }

  /** Builds the graph without running it: checks every weight the config needs is there. */
  check(requested: GraphVariant): GraphBuilder {
    const g = this.graph(requested);
    g.assertComplete(this.source);
    return g;
  }

  private graphName(v: GraphVariant): string {
    return `${this.name}${v.full ? '-full' : ''}${v.interpolate ? '-interp' : ''}${v.quantized ? '-q8' : ''}`;
  }

  private weightSource(): WeightSource {
    if (this.options.dtype === 'q8') {
      this.q8 ??= quantizedWeights(this.weights, this.options.graphCacheDir ?? defaultGraphCacheDir());
      const q8 = this.q8;
      return { get: (name) => this.weights.tensors.get(name) ?? q8.get(name) };
    }
    return { get: (name) => this.weights.tensors.get(name) };
  }

  /** The variant with the model's precision applied. */
  withDtype(variant: GraphVariant): GraphVariant {
    return { ...variant, quantized: this.options.dtype === 'q8' };
  }

  session(requested: GraphVariant): Promise<Session> {
    const key = this.graphName(this.withDtype(requested));
    let s = this.sessions.get(key);
    if (!s) {
      s = createSession(this.check(requested), this.options);
      this.sessions.set(key, s);
      s.catch(() => this.sessions.delete(key));
    }
    return s;
  }

  async run(variant: GraphVariant, feeds: Record<string, Tensor>, fetch: string[]): Promise<Record<string, Tensor>> {
    return (await this.session(variant)).run(feeds, fetch);
  }

  async dispose(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map(async (s) => (await s.catch(() => undefined))?.release()));
  }
}

function towerOutput(out: Record<string, Tensor>, layers: number, flags: OutputFlags): TowerOutput {
  const result: TowerOutput = { lastHiddenState: out.last_hidden_state!, poolerOutput: out.pooler_output! };
  if (flags.outputHiddenStates) result.hiddenStates = Array.from({ length: layers + 1 }, (_, i) => out[`hidden_states.${i}`]!);
  if (flags.outputAttentions) result.attentions = Array.from({ length: layers }, (_, i) => out[`attentions.${i}`]!);
  return result;
}

function fetchList(base: string[], layers: number, flags: OutputFlags): string[] {
  const names = [...base];
  if (flags.outputHiddenStates) for (let i = 0; i <= layers; i++) names.push(`hidden_states.${i}`);
  if (flags.outputAttentions) for (let i = 0; i < layers; i++) names.push(`attentions.${i}`);
  return names;
}

class TextTower {
  readonly tower: Tower;

  constructor(readonly config: AltCLIPTextConfig, weights: Weights, options: ModelOptions, source: string,
    prefix: string, projectionDim?: number) {
    this.tower = new Tower('text', (g, v) => buildTextGraph(g, config, v, { prefix, projectionDim }),
      weights, options, source);
  }

  async run(inputs: TextInputs, flags: OutputFlags, extra: string[] = []): Promise<[TowerOutput, Record<string, Tensor>]> {
    const [inputIds, attentionMask] = checkTextInputs(inputs, this.config);
    const full = Boolean(flags.outputHiddenStates || flags.outputAttentions);
    const layers = this.config.numHiddenLayers;
    const out = await this.tower.run({ full }, { input_ids: inputIds, attention_mask: attentionMask },
      fetchList(['last_hidden_state', 'pooler_output', ...extra], layers, flags));
    return [towerOutput(out, layers, flags), out];
  }

  /**
   * One pooled output per text ([batch, dim]) without computing the padding: rows are grouped by
   * length and each group is cut to its longest row. Exact, since trailing masked tokens change
   * nothing before them (their keys get zero attention, position ids count from the left) and
   * the pooled row is token 0.
   */
  async pooled(inputs: TextInputs, output: string): Promise<Tensor> {
    const [inputIds, attentionMask] = checkTextInputs(inputs, this.config);
    const [batch, seq] = inputIds.dims as [number, number];
    const mask = attentionMask.data as BigInt64Array;
    const lengths = Array.from({ length: batch }, (_, b) => {
      let n = seq;
      while (n > 1 && mask[b * seq + n - 1] === 0n) n--;
      return n;
    });
    const groups = lengthGroups(lengths);
    if (groups.length === 1 && lengths.every((n) => n === seq)) {
      return (await this.tower.run({ full: false }, { input_ids: inputIds, attention_mask: attentionMask }, [output]))[output]!;
    }
    const ids = inputIds.data as BigInt64Array;
    let result: Float32Array | undefined;
    let dim = 0;
    for (const rows of groups) {
      const len = Math.max(...rows.map((r) => lengths[r]!));
      const take = (src: BigInt64Array) => {
        const out = new BigInt64Array(rows.length * len);
        rows.forEach((r, i) => out.set(src.subarray(r * seq, r * seq + len), i * len));
        return new Tensor('int64', out, [rows.length, len]);
      };
      const out = (await this.tower.run({ full: false }, { input_ids: take(ids), attention_mask: take(mask) }, [output]))[output]!;
      dim = out.dims[1]!;
      result ??= new Float32Array(batch * dim);
      const data = out.data as Float32Array;
      rows.forEach((r, i) => result!.set(data.subarray(i * dim, (i + 1) * dim), r * dim));
    }
    return new Tensor('float32', result!, [batch, dim]);
  }
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

class VisionTower {
  readonly tower: Tower;
  private positionEmbedding?: Float32Array;

  constructor(readonly config: AltCLIPVisionConfig, private readonly weights: Weights, options: ModelOptions,
    source: string, private readonly prefix: string, projectionDim?: number) {
    this.tower = new Tower('vision', (g, v) => buildVisionGraph(g, config, v, { prefix, projectionDim }),
      weights, options, source);
  }

  async run(inputs: VisionInputs, flags: OutputFlags, extra: string[] = []): Promise<[TowerOutput, Record<string, Tensor>]> {
    const pixelValues = checkPixelValues(inputs, this.config);
    const full = Boolean(flags.outputHiddenStates || flags.outputAttentions);
    const interpolate = Boolean(inputs.interpolatePosEncoding);
    const feeds: Record<string, Tensor> = { pixel_values: pixelValues };
    if (interpolate) {
      this.positionEmbedding ??= this.weights.readFloat32(`${this.prefix}.embeddings.position_embedding.weight`);
      const [, , height, width] = pixelValues.dims as number[];
      feeds.position_embeddings = interpolatePositionEmbeddings(this.positionEmbedding, this.config, height!, width!);
    }
    const layers = this.config.numHiddenLayers;
    const fetch = fetchList(['last_hidden_state', 'pooler_output', ...extra], layers, flags);
    // a few images per run: every output is batch-first, so the runs' outputs are stacked
    const [batch, , height, width] = pixelValues.dims as number[];
    const tokens = Math.floor(height! / this.config.patchSize) * Math.floor(width! / this.config.patchSize) + 1;
    const perRun = Math.max(1, Math.floor(IMAGE_TOKENS_PER_RUN / tokens));
    const outs: Record<string, Tensor>[] = [];
    for (let start = 0; start < batch!; start += perRun) {
      const part = batch! <= perRun ? pixelValues : batchSlice(pixelValues, start, Math.min(batch!, start + perRun));
      outs.push(await this.tower.run({ full, interpolate }, { ...feeds, pixel_values: part }, fetch));
    }
    const out = outs.length === 1 ? outs[0]! : Object.fromEntries(fetch.map((name) => [name, concatBatch(outs.map((o) => o[name]!))]));
    return [towerOutput(out, layers, flags), out];
  }
}

/**
 * Image tokens per run of the vision tower. Big batches are slower per image: a batch of 8 at 224
 * (2056 tokens) keeps ~33 MB of MLP activations in flight, which falls out of the cache. Measured on
 * the full-size tower (2 cores): 8 images as 1x8 / 4x2 / 8x1 runs took 4.79 / 4.49 / 4.69 s in q8,
 * 8.89-9.10 / 8.63-8.72 / 8.58-8.65 s in fp32; so runs of ~2 images at 224 (fewer tokens: more images).
 */
const IMAGE_TOKENS_PER_RUN = 768;

/** Rows [start, end) of a batch-first tensor (a copy: sessions take whole buffers). */
function batchSlice(t: Tensor, start: number, end: number): Tensor {
  const row = t.dims.slice(1).reduce((a, b) => a * b, 1);
  const data = t.data as Float32Array;
  return new Tensor(t.type as 'float32', data.slice(start * row, end * row), [end - start, ...t.dims.slice(1)]);
}

/** Batch-first float tensors stacked along the batch dimension. */
function concatBatch(parts: Tensor[]): Tensor {
  const total = parts.reduce((n, p) => n + (p.data as Float32Array).length, 0);
  const data = new Float32Array(total);
  let offset = 0;
  for (const p of parts) {
    data.set(p.data as Float32Array, offset);
    offset += (p.data as Float32Array).length;
  }
  return new Tensor('float32', data, [parts.reduce((n, p) => n + p.dims[0]!, 0), ...parts[0]!.dims.slice(1)]);
}

/** Tensors in the checkpoint that transformers neither loads nor warns about. */
const IGNORED_KEYS = [/(^|\.)position_ids$/, /(^|\.)token_type_ids$/];

function warnUnused(weights: Weights, used: Set<string>, source: string, className: string): void {
  const unused = [...weights.tensors.keys()].filter((k) => !used.has(k) && !used.has(`${k}.q8`)
    && !IGNORED_KEYS.some((r) => r.test(k)));
  if (unused.length) {
    // (the browser build has no process: console.warn there)
    (globalThis.process?.emitWarning ?? console.warn)(`Some weights of the model checkpoint at ${source} were not used when initializing `
      + `${className}: ${unused.slice(0, 20).join(', ')}${unused.length > 20 ? `, ... (${unused.length} in all)` : ''}`);
  }
}

// ---------------------------------------------------------------------------------------------

export class AltCLIPModel {
  private readonly text: TextTower;
  private readonly vision: VisionTower;
  private readonly logitScale: number;

  private constructor(readonly config: AltCLIPConfig, weights: Weights, options: ModelOptions, source: string) {
    this.text = new TextTower(config.textConfig, weights, options, source, 'text_model', config.projectionDim);
    this.vision = new VisionTower(config.visionConfig, weights, options, source, 'vision_model', config.projectionDim);
    // every missing or mis-shaped weight of both towers in one error
    const graphs = [this.text.tower.graph({ full: false }), this.vision.tower.graph({ full: false })];
    const all = new GraphBuilder('check', { get: () => undefined });
    all.problems.push(...graphs.flatMap((g) => g.problems));
    if (!weights.tensors.has('logit_scale')) all.problems.push('missing weight logit_scale (expected shape [])');
    all.assertComplete(source);
    this.logitScale = weights.readFloat32('logit_scale')[0]!;
    const used = new Set(['logit_scale', ...graphs.flatMap((g) => [...g.initializers.keys()])]);
    warnUnused(weights, used, source, 'AltCLIPModel');
  }

  static async fromPretrained(pathOrRepoId: string, options: ModelOptions = {}): Promise<AltCLIPModel> {
    const config = await AltCLIPConfig.fromPretrained(pathOrRepoId, options);
    const weights = await loadWeights(pathOrRepoId, options);
    return AltCLIPModel.fromWeights(config, weights, options, pathOrRepoId);
  }

  /**
   * A model from a config and weights already loaded (`source` names them in errors): what
   * fromPretrained does once the files are found. The browser build loads them its own way.
   */
  static async fromWeights(config: AltCLIPConfig, weights: Weights, options: ModelOptions, source: string): Promise<AltCLIPModel> {
    const model = new AltCLIPModel(config, weights, options, source);
    await Promise.all([model.text.tower.session({ full: false }), model.vision.tower.session({ full: false })]);
    return model;
  }

  /** exp(logit_scale), the temperature applied to the cosine similarities. */
  get logitScaleExp(): number {
    return Math.exp(this.logitScale);
  }

  /** AltCLIPModel.get_text_features: text_projection(pooler_output), not normalised. */
  async getTextFeatures(inputs: TextInputs): Promise<Tensor> {
    return this.text.pooled(inputs, 'text_features');
  }

  /** AltCLIPModel.get_image_features: visual_projection(pooler_output), not normalised. */
  async getImageFeatures(inputs: VisionInputs): Promise<Tensor> {
    const [, out] = await this.vision.run(inputs, {}, ['image_features']);
    return out.image_features!;
  }

  async forward(inputs: Partial<TextInputs> & Partial<VisionInputs> & OutputFlags & { returnLoss?: boolean }): Promise<AltCLIPOutput> {
    if (!inputs.inputIds || !inputs.pixelValues) {
      throw new Error('AltCLIPModel.forward needs both inputIds and pixelValues (as in transformers); '
        + 'use getTextFeatures / getImageFeatures, or AltCLIPTextModel / AltCLIPVisionModel, for one tower');
    }
    const flags = { outputHiddenStates: inputs.outputHiddenStates, outputAttentions: inputs.outputAttentions };
    if (inputs.returnLoss && inputs.inputIds.dims[0] !== inputs.pixelValues.dims[0]) {
      throw new Error(`returnLoss needs as many texts as images, got ${inputs.inputIds.dims[0]} texts and ${inputs.pixelValues.dims[0]} images`);
    }
    const [visionModelOutput, v] = await this.vision.run(inputs as VisionInputs, flags, ['image_features']);
    const [textModelOutput, t] = await this.text.run(inputs as TextInputs, flags, ['text_features']);

    const imageEmbeds = normalize(v.image_features!);
    const textEmbeds = normalize(t.text_features!);
    const logitsPerText = matmulT(textEmbeds, imageEmbeds, Math.fround(Math.exp(this.logitScale)));
    const logitsPerImage = transpose(logitsPerText);
    const output: AltCLIPOutput = { logitsPerImage, logitsPerText, textEmbeds, imageEmbeds, textModelOutput, visionModelOutput };
    if (inputs.returnLoss) {
      const loss = (contrastiveLoss(logitsPerText) + contrastiveLoss(logitsPerImage)) / 2;
      output.loss = new Tensor('float32', Float32Array.of(loss), []);
    }
    return output;
  }

  async dispose(): Promise<void> {
    await Promise.all([this.text.tower.dispose(), this.vision.tower.dispose()]);
  }
}

/** AltCLIPTextModel: the text tower alone, from its own folder or from a full AltCLIP checkpoint. */
export class AltCLIPTextModel {
  private readonly text: TextTower;

  private constructor(readonly config: AltCLIPTextConfig, weights: Weights, options: ModelOptions, source: string) {
    const prefix = weights.tensors.has('text_model.roberta.embeddings.word_embeddings.weight') ? 'text_model' : '';
    this.text = new TextTower(config, weights, options, source, prefix);
    this.text.tower.check({ full: false });
  }

  static async fromPretrained(pathOrRepoId: string, options: ModelOptions = {}): Promise<AltCLIPTextModel> {
    const config = await AltCLIPTextConfig.fromPretrained(pathOrRepoId, options);
    const weights = await loadWeights(pathOrRepoId, options);
    const model = new AltCLIPTextModel(config, weights, options, pathOrRepoId);
    await model.text.tower.session({ full: false });
    return model;
  }

  async forward(inputs: TextInputs & OutputFlags): Promise<TowerOutput> {
    return (await this.text.run(inputs, inputs))[0];
  }

  async dispose(): Promise<void> {
    await this.text.tower.dispose();
  }
}

/** AltCLIPVisionModel: the vision tower alone (its checkpoint keys keep the vision_model. prefix). */
export class AltCLIPVisionModel {
  private readonly vision: VisionTower;

  private constructor(readonly config: AltCLIPVisionConfig, weights: Weights, options: ModelOptions, source: string) {
    this.vision = new VisionTower(config, weights, options, source, 'vision_model');
    this.vision.tower.check({ full: false });
  }

  static async fromPretrained(pathOrRepoId: string, options: ModelOptions = {}): Promise<AltCLIPVisionModel> {
    const config = await AltCLIPVisionConfig.fromPretrained(pathOrRepoId, options);
    const weights = await loadWeights(pathOrRepoId, options);
    const model = new AltCLIPVisionModel(config, weights, options, pathOrRepoId);
    await model.vision.tower.session({ full: false });
    return model;
  }

  async forward(inputs: VisionInputs & OutputFlags): Promise<TowerOutput> {
    return (await this.vision.run(inputs, inputs))[0];
  }

  async dispose(): Promise<void> {
    await this.vision.tower.dispose();
  }
}
