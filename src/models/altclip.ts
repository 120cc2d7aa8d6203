// The public model classes: AltCLIPModel, AltCLIPTextModel, AltCLIPVisionModel (transformers 4.40.2's
// names and outputs). The model itself is modeling_altclip.ts (graphs, head, interpolate_pos_encoding);
// the towers' sessions and runs are towers.ts; here: loading, and the load-time check that the
// checkpoint and the config agree tensor for tensor.
import { AltCLIPConfig, AltCLIPTextConfig, AltCLIPVisionConfig } from '../config.js';
import type { PretrainedOptions } from '../hub/index.js';
import { assertNoProblems, type GraphBuilder } from '../onnx/graph.js';
import type { Tensor } from '../tensor.js';
import { loadWeights, type Weights } from '../weights/index.js';
import { altCLIPModelHead } from './modeling_altclip.js';
import type { SessionOptions } from './session.js';
import { TextTower, type Tower, VisionTower } from './towers.js';

export { interpolatePositionEmbeddings } from './modeling_altclip.js';

export interface ModelOptions extends PretrainedOptions, SessionOptions {
  /**
   * Precision of the encoder layers' Linear weights: "fp32" (default, the checkpoint's values; fp16 /
   * bf16 checkpoints are computed in fp32) or "q8" (int8 weights quantized at load time and cached,
   * activations quantized dynamically; see quantize.ts).
   */
  dtype?: 'fp32' | 'q8';
  /**
   * AltCLIPModel only: which towers to check and start at load (default "both"). With "text" (or
   * "vision") the other tower's weights are neither checked nor quantized nor given a session; using
   * it later builds it then.
   */
  parts?: 'text' | 'vision' | 'both';
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

/** Buffers a checkpoint may carry that transformers neither loads nor warns about. */
const BUFFERS = /(^|\.)(position_ids|token_type_ids)$/;
/** AltRobertaModel(add_pooling_layer=False) has no pooler: a checkpoint's pooler is ignored with a warning, as transformers does. */
const TEXT_POOLER = /(^|\.)roberta\.pooler\./;

/**
 * Every checkpoint tensor must be used (a config with fewer layers than the weights is refused, not
 * silently truncated): tensors in `scope` (a prefix; "" for all) that no graph uses are added to
 * `problems`. Tensors outside the scope (the other tower, when one tower is loaded from a full
 * checkpoint) are ignored, as transformers does.
 */
function checkAllUsed(weights: Weights, graphs: GraphBuilder[], scope: string, extraUsed: string[], problems: string[],
  source: string, className: string): void {
  const used = new Set([...extraUsed, ...graphs.flatMap((g) => [...g.requested])]);
  const unused = [...weights.tensors.values()].filter((r) => !used.has(r.name) && !BUFFERS.test(r.name)
    && (!scope || r.name.startsWith(`${scope}.`)));
  const pooler = unused.filter((r) => TEXT_POOLER.test(r.name));
  if (pooler.length) {
    process.emitWarning(`Some weights of the model checkpoint at ${source} were not used when initializing `
      + `${className}: ${pooler.map((r) => r.name).join(', ')}`);
  }
  const rest = unused.filter((r) => !TEXT_POOLER.test(r.name));
  if (rest.length) {
    problems.push(`${rest.length} checkpoint tensor${rest.length > 1 ? 's are' : ' is'} not used by the config (more layers than `
      + `num_hidden_layers, or another model's weights?): ${rest.slice(0, 5).map((r) => `${r.name} [${r.shape}]`).join(', ')}`
      + `${rest.length > 5 ? ', ...' : ''}`);
  }
}

/** Builds the towers' plain graphs and refuses the checkpoint unless it matches them exactly (one error). */
function checkWeights(towers: Tower[], weights: Weights, scope: string, extra: Record<string, number[]>, source: string,
  className: string): void {
  const graphs = towers.map((t) => t.graph({ full: false }));
  const problems = graphs.flatMap((g) => g.problems);
  for (const [name, shape] of Object.entries(extra)) {
    const ref = weights.tensors.get(name);
    if (!ref) problems.push(`missing weight ${name} (expected shape [${shape}])`);
    // (a scalar such as logit_scale may be stored as [] or [1])
    else if (ref.shape.reduce((a, b) => a * b, 1) !== shape.reduce((a, b) => a * b, 1)) {
      problems.push(`weight ${name} has shape [${ref.shape}], the config implies [${shape}]`);
    }
  }
  checkAllUsed(weights, graphs, scope, Object.keys(extra), problems, source, className);
  assertNoProblems(source, problems);
}

// ---------------------------------------------------------------------------------------------

export class AltCLIPModel {
  private readonly text: TextTower;
  private readonly vision: VisionTower;
  private readonly logitScale: number;
  /** The towers loaded up front (ModelOptions.parts). */
  private readonly towers: Tower[];

  private constructor(readonly config: AltCLIPConfig, weights: Weights, options: ModelOptions, source: string) {
    this.text = new TextTower(config.textConfig, weights, options, source, 'text_model', config.projectionDim);
    this.vision = new VisionTower(config.visionConfig, weights, options, source, 'vision_model', config.projectionDim);
    const parts = options.parts ?? 'both';
    if (parts !== 'both' && parts !== 'text' && parts !== 'vision') {
      throw new Error(`parts must be "text", "vision" or "both", got ${JSON.stringify(parts)}`);
    }
    this.towers = parts === 'both' ? [this.text.tower, this.vision.tower] : [parts === 'text' ? this.text.tower : this.vision.tower];
    // one tower: the other's weights (outside its prefix) are left alone
    checkWeights(this.towers, weights, parts === 'both' ? '' : `${parts}_model`, { logit_scale: [] }, source, 'AltCLIPModel');
    this.logitScale = weights.readFloat32('logit_scale')[0]!;
  }

  static async fromPretrained(pathOrRepoId: string, options: ModelOptions = {}): Promise<AltCLIPModel> {
    const config = await AltCLIPConfig.fromPretrained(pathOrRepoId, options);
    const weights = await loadWeights(pathOrRepoId, options);
    const model = new AltCLIPModel(config, weights, options, pathOrRepoId);
    await Promise.all(model.towers.map((t) => t.session({ full: false })));
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

    const head = altCLIPModelHead(t.text_features!, v.image_features!, this.logitScale, Boolean(inputs.returnLoss));
    return { ...head, textModelOutput, visionModelOutput };
  }

  async dispose(): Promise<void> {
    await Promise.all([this.text.tower.dispose(), this.vision.tower.dispose()]);
  }
}

/** What AltCLIPTextModel and AltCLIPVisionModel share: one tower, started at load. */
abstract class OneTowerModel<Inputs> {
  protected abstract readonly part: { tower: Tower; run(inputs: Inputs, flags: OutputFlags): Promise<[TowerOutput, unknown]> };

  async forward(inputs: Inputs & OutputFlags): Promise<TowerOutput> {
    return (await this.part.run(inputs, inputs))[0];
  }

  async dispose(): Promise<void> {
    await this.part.tower.dispose();
  }

  protected static async started<M extends OneTowerModel<unknown>>(model: M): Promise<M> {
    await model.part.tower.session({ full: false });
    return model;
  }
}

/** AltCLIPTextModel: the text tower alone, from its own folder or from a full AltCLIP checkpoint. */
export class AltCLIPTextModel extends OneTowerModel<TextInputs> {
  protected readonly part: TextTower;

  private constructor(readonly config: AltCLIPTextConfig, weights: Weights, options: ModelOptions, source: string) {
    super();
    const prefix = weights.tensors.has('text_model.roberta.embeddings.word_embeddings.weight') ? 'text_model' : '';
    this.part = new TextTower(config, weights, options, source, prefix);
    checkWeights([this.part.tower], weights, prefix, {}, source, 'AltCLIPTextModel');
  }

  static async fromPretrained(pathOrRepoId: string, options: ModelOptions = {}): Promise<AltCLIPTextModel> {
    const config = await AltCLIPTextConfig.fromPretrained(pathOrRepoId, options);
    return OneTowerModel.started(new AltCLIPTextModel(config, await loadWeights(pathOrRepoId, options), options, pathOrRepoId));
  }
}

/** AltCLIPVisionModel: the vision tower alone (its checkpoint keys keep the vision_model. prefix). */
export class AltCLIPVisionModel extends OneTowerModel<VisionInputs> {
  protected readonly part: VisionTower;

  private constructor(readonly config: AltCLIPVisionConfig, weights: Weights, options: ModelOptions, source: string) {
    super();
    this.part = new VisionTower(config, weights, options, source, 'vision_model');
    checkWeights([this.part.tower], weights, 'vision_model', {}, source, 'AltCLIPVisionModel');
  }

  static async fromPretrained(pathOrRepoId: string, options: ModelOptions = {}): Promise<AltCLIPVisionModel> {
    const config = await AltCLIPVisionConfig.fromPretrained(pathOrRepoId, options);
    return OneTowerModel.started(new AltCLIPVisionModel(config, await loadWeights(pathOrRepoId, options), options, pathOrRepoId));
  }
}
