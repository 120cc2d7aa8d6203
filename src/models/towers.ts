// The towers behind the public classes (altclip.ts): input checks (the errors transformers gives), one
// session per graph variant (graph_cache.ts) created on first use, and big calls cut into runs
// (batching.ts) whose outputs are stacked.
import type { AltCLIPTextConfig, AltCLIPVisionConfig } from '../config.js';
import { GraphBuilder } from '../onnx/graph.js';
import { Tensor } from '../tensor.js';
import type { TensorRef, Weights } from '../weights/index.js';
import type { ModelOptions, OutputFlags, TextInputs, TowerOutput, VisionInputs } from './altclip.js';
import { batchSlice, concatBatch, imagesPerRun, lengthGroups, unpaddedLengths } from './batching.js';
import { createSession } from './graph_cache.js';
import { buildTextGraph, buildVisionGraph, interpolatePositionEmbeddings, type GraphVariant } from './modeling_altclip.js';
import { prequantizedScheme, q8Scheme, quantizedWeights, type Q8Scheme } from './quantize.js';
import { checkSessionOptions, type Session } from './session.js';

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
  if (!(inputIds instanceof Tensor)) throw new Error('inputIds must be a Tensor');
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
  if (!(pixelValues instanceof Tensor)) throw new Error('pixelValues must be a Tensor');
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
// Towers: a graph per (tower, variant), each with its own session, created on first use.

type Builder = (g: GraphBuilder, variant: GraphVariant) => void;

function checkDtype(options: ModelOptions): void {
  if (options.dtype !== undefined && options.dtype !== 'fp32' && options.dtype !== 'q8') {
    throw new Error(`dtype must be "fp32" or "q8", got ${JSON.stringify(options.dtype)}`);
  }
}

export class Tower {
  private readonly sessions = new Map<string, Promise<Session>>();
  private readonly q8 = new Map<string, Map<string, TensorRef>>();
  private readonly precision: Pick<GraphVariant, 'quantized' | 'weightBits' | 'int8TextAttention'>;
  /** dtype "q8": the model's scheme (quantize.ts), fixed when the model is made. */
  readonly scheme?: Q8Scheme;
  /** The checkpoint holds the int8 weights (altclip convert): nothing is quantized. */
  private readonly prequantized: boolean;

  constructor(
    private readonly name: string,
    private readonly build: Builder,
    private readonly weights: Weights,
    private readonly options: ModelOptions,
    private readonly source: string,
  ) {
    checkDtype(options);
    checkSessionOptions(options);
    // the q8 scheme is read once, when the model is made: every later graph of this tower uses the same
    // (ALTCLIP_Q8_SCHEME may change afterwards)
    // a q8 checkpoint (altclip convert) brings its own scheme and int8 weights
    const stored = prequantizedScheme(weights, source);
    this.prequantized = stored !== undefined;
    if (stored && options.dtype !== 'q8') {
      throw new Error(`${source}: a q8 checkpoint (int8 weights, scheme ${stored.name}): load it with dtype "q8"`);
    }
    if (stored && q8Scheme().name !== stored.name && globalThis.process?.env?.ALTCLIP_Q8_SCHEME) {
      throw new Error(`${source}: a q8 checkpoint of scheme ${stored.name}, but ALTCLIP_Q8_SCHEME asks for ${q8Scheme().name}`);
    }
    if (options.dtype === 'q8') {
      this.scheme = stored ?? q8Scheme();
      this.precision = { quantized: true, weightBits: this.scheme.weightBits, int8TextAttention: this.scheme.textAttention };
    } else {
      this.precision = { quantized: false };
    }
  }

  /**
   * Builds the graph: missing / mis-shaped weights are collected in its `problems`; in q8 the
   * weights it asks for in int8 are quantized (once, cached) and supplied.
   */
  graph(requested: GraphVariant): GraphBuilder {
    const variant = this.withDtype(requested);
    const g = new GraphBuilder(this.graphName(variant), { get: (name) => this.weights.tensors.get(name) });
    if (this.scheme) g.q8Activations = { granularity: this.scheme.activations, bits: this.scheme.activationBits };
    this.build(g, variant);
    if (g.quantized.size && !g.problems.length) {
      const names = [...g.quantized].sort();
      const key = names.join('\n');
      if (this.prequantized) this.q8.set(key, this.weights.tensors);
      if (!this.q8.has(key)) this.q8.set(key, quantizedWeights(this.weights, names, this.options.graphCacheDir, this.scheme!.weightBits));
      g.addQuantized(this.q8.get(key)!);
    }
    return g;
  }

  /** Builds the graph without running it: checks every weight the config needs is there. */
  check(requested: GraphVariant): GraphBuilder {
    const g = this.graph(requested);
    g.assertComplete(this.source);
    return g;
  }

  private graphName(v: GraphVariant): string {
    const q8 = v.quantized && this.scheme ? `-${this.scheme.name}` : '';
    return `${this.name}${v.full ? '-full' : ''}${v.interpolate ? '-interp' : ''}${q8}`;
  }

  /** The variant with the model's precision applied. */
  withDtype(variant: GraphVariant): GraphVariant {
    return { ...variant, ...this.precision };
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

export class TextTower {
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
    const lengths = unpaddedLengths(mask, batch, seq);
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

export class VisionTower {
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
    const perRun = imagesPerRun(tokens);
    const outs: Record<string, Tensor>[] = [];
    for (let start = 0; start < batch!; start += perRun) {
      const part = batch! <= perRun ? pixelValues : batchSlice(pixelValues, start, Math.min(batch!, start + perRun));
      outs.push(await this.tower.run({ full, interpolate }, { ...feeds, pixel_values: part }, fetch));
    }
    const out = outs.length === 1 ? outs[0]! : Object.fromEntries(fetch.map((name) => [name, concatBatch(outs.map((o) => o[name]!))]));
    return [towerOutput(out, layers, flags), out];
  }
}
