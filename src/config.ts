// AltCLIP configurations, mirroring transformers' configuration_altclip.py (4.40.2).
// config.json is sparse: transformers writes nested configs as a diff against the class defaults,
// so every missing key takes the default below. Unknown keys are ignored.
import * as fs from 'node:fs';

import { resolveFile, type PretrainedOptions } from './hub/index.js';

type Json = Record<string, unknown>;
type FieldKind = 'int' | 'number' | 'string' | 'boolean' | 'int?';

/** Reads `key` from `json` (or the default), checking its type; errors name the key. */
function field<T>(json: Json, defaults: Json, kinds: Record<string, FieldKind>, key: string, where: string): T {
  const value = key in json && json[key] !== undefined ? json[key] : defaults[key];
  const kind = kinds[key]!;
  const bad = (want: string) => new Error(`${where}: "${key}" must be ${want}, got ${JSON.stringify(value)}`);
  switch (kind) {
    case 'int':
      if (typeof value !== 'number' || !Number.isInteger(value)) throw bad('an integer');
      break;
    case 'int?':
      if (value !== null && (typeof value !== 'number' || !Number.isInteger(value))) throw bad('an integer or null');
      break;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) throw bad('a number');
      break;
    case 'string':
      if (typeof value !== 'string') throw bad('a string');
      break;
    case 'boolean':
      if (typeof value !== 'boolean') throw bad('a boolean');
      break;
  }
  return value as T;
}

function positive(where: string, key: string, value: number): void {
  if (!(value > 0)) throw new Error(`${where}: "${key}" must be positive, got ${value}`);
}

function divisible(where: string, hiddenSize: number, heads: number): void {
  if (hiddenSize % heads !== 0) {
    throw new Error(
      `${where}: "hidden_size" (${hiddenSize}) must be divisible by "num_attention_heads" (${heads})`,
    );
  }
}

function asObject(value: unknown, where: string): Json {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`${where}: expected a JSON object, got ${JSON.stringify(value)}`);
  }
  return value as Json;
}

async function readConfigJson(pathOrRepoId: string, options: PretrainedOptions): Promise<Json> {
  const file = (await resolveFile(pathOrRepoId, 'config.json', options))!;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read config (${(e as Error).message})`);
  }
  try {
    return asObject(JSON.parse(text), file);
  } catch (e) {
    throw new Error(`${file}: invalid config.json (${(e as Error).message})`);
  }
}

// ---------------------------------------------------------------------------------------------
// AltCLIPTextConfig: an XLM-RoBERTa encoder plus AltCLIP's pre_LN + transformation head.

const TEXT_DEFAULTS = {
  vocab_size: 250002,
  hidden_size: 1024,
  num_hidden_layers: 24,
  num_attention_heads: 16,
  intermediate_size: 4096,
  hidden_act: 'gelu',
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
  max_position_embeddings: 514,
  type_vocab_size: 1,
  initializer_range: 0.02,
  initializer_factor: 0.02,
  layer_norm_eps: 1e-5,
  pad_token_id: 1,
  bos_token_id: 0,
  eos_token_id: 2,
  position_embedding_type: 'absolute',
  use_cache: true,
  project_dim: 768,
};
const TEXT_KINDS: Record<keyof typeof TEXT_DEFAULTS, FieldKind> = {
  vocab_size: 'int', hidden_size: 'int', num_hidden_layers: 'int', num_attention_heads: 'int',
  intermediate_size: 'int', hidden_act: 'string', hidden_dropout_prob: 'number',
  attention_probs_dropout_prob: 'number', max_position_embeddings: 'int', type_vocab_size: 'int',
  initializer_range: 'number', initializer_factor: 'number', layer_norm_eps: 'number',
  pad_token_id: 'int', bos_token_id: 'int?', eos_token_id: 'int?', position_embedding_type: 'string',
  use_cache: 'boolean', project_dim: 'int',
};

export class AltCLIPTextConfig {
  static readonly modelType = 'altclip_text_model';
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly intermediateSize: number;
  readonly hiddenAct: string;
  readonly hiddenDropoutProb: number;
  readonly attentionProbsDropoutProb: number;
  readonly maxPositionEmbeddings: number;
  readonly typeVocabSize: number;
  readonly initializerRange: number;
  readonly initializerFactor: number;
  readonly layerNormEps: number;
  readonly padTokenId: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly positionEmbeddingType: string;
  readonly useCache: boolean;
  readonly projectDim: number;

  /** From a (possibly sparse) `text_config` dict in transformers' snake_case. */
  constructor(json: Json = {}, where = 'text_config') {
    const f = <T>(key: keyof typeof TEXT_DEFAULTS) => field<T>(json, TEXT_DEFAULTS, TEXT_KINDS, key, where);
    this.vocabSize = f('vocab_size');
    this.hiddenSize = f('hidden_size');
    this.numHiddenLayers = f('num_hidden_layers');
    this.numAttentionHeads = f('num_attention_heads');
    this.intermediateSize = f('intermediate_size');
    this.hiddenAct = f('hidden_act');
    this.hiddenDropoutProb = f('hidden_dropout_prob');
    this.attentionProbsDropoutProb = f('attention_probs_dropout_prob');
    this.maxPositionEmbeddings = f('max_position_embeddings');
    this.typeVocabSize = f('type_vocab_size');
    this.initializerRange = f('initializer_range');
    this.initializerFactor = f('initializer_factor');
    this.layerNormEps = f('layer_norm_eps');
    this.padTokenId = f('pad_token_id');
    this.bosTokenId = f('bos_token_id');
    this.eosTokenId = f('eos_token_id');
    this.positionEmbeddingType = f('position_embedding_type');
    this.useCache = f('use_cache');
    this.projectDim = f('project_dim');
    for (const key of ['vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads',
      'intermediate_size', 'max_position_embeddings', 'type_vocab_size', 'project_dim'] as const) {
      positive(where, key, f<number>(key));
    }
    positive(where, 'layer_norm_eps', this.layerNormEps);
    divisible(where, this.hiddenSize, this.numAttentionHeads);
    if (this.positionEmbeddingType !== 'absolute') {
      throw new Error(`${where}: "position_embedding_type" ${JSON.stringify(this.positionEmbeddingType)} is not supported (only "absolute", as AltCLIP uses)`);
    }
  }

  /**
   * Like transformers' AltCLIPTextConfig.from_pretrained, except that a full `altclip` config
   * yields its `text_config` (transformers 4.40.2 silently builds a default-size model there).
   */
  static async fromPretrained(pathOrRepoId: string, options: PretrainedOptions = {}): Promise<AltCLIPTextConfig> {
    const json = await readConfigJson(pathOrRepoId, options);
    if (json.model_type === 'altclip') {
      return new AltCLIPTextConfig(asObject(json.text_config ?? {}, 'config.json: "text_config"'));
    }
    return new AltCLIPTextConfig(json, 'config.json');
  }

  toJSON(): Json {
    return {
      vocab_size: this.vocabSize, hidden_size: this.hiddenSize, num_hidden_layers: this.numHiddenLayers,
      num_attention_heads: this.numAttentionHeads, intermediate_size: this.intermediateSize,
      hidden_act: this.hiddenAct, hidden_dropout_prob: this.hiddenDropoutProb,
      attention_probs_dropout_prob: this.attentionProbsDropoutProb,
      max_position_embeddings: this.maxPositionEmbeddings, type_vocab_size: this.typeVocabSize,
      initializer_range: this.initializerRange, initializer_factor: this.initializerFactor,
      layer_norm_eps: this.layerNormEps, pad_token_id: this.padTokenId, bos_token_id: this.bosTokenId,
      eos_token_id: this.eosTokenId, position_embedding_type: this.positionEmbeddingType,
      use_cache: this.useCache, project_dim: this.projectDim, model_type: AltCLIPTextConfig.modelType,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// AltCLIPVisionConfig: a CLIP ViT. The defaults are ViT-B/32 (BAAI/AltCLIP itself is ViT-L/14).

const VISION_DEFAULTS = {
  hidden_size: 768,
  intermediate_size: 3072,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_channels: 3,
  image_size: 224,
  patch_size: 32,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  attention_dropout: 0.0,
  initializer_range: 0.02,
  initializer_factor: 1.0,
};
const VISION_KINDS: Record<keyof typeof VISION_DEFAULTS, FieldKind> = {
  hidden_size: 'int', intermediate_size: 'int', projection_dim: 'int', num_hidden_layers: 'int',
  num_attention_heads: 'int', num_channels: 'int', image_size: 'int', patch_size: 'int',
  hidden_act: 'string', layer_norm_eps: 'number', attention_dropout: 'number',
  initializer_range: 'number', initializer_factor: 'number',
};

export class AltCLIPVisionConfig {
  static readonly modelType = 'altclip_vision_model';
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly projectionDim: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly numChannels: number;
  readonly imageSize: number;
  readonly patchSize: number;
  readonly hiddenAct: string;
  readonly layerNormEps: number;
  readonly attentionDropout: number;
  readonly initializerRange: number;
  readonly initializerFactor: number;

  constructor(json: Json = {}, where = 'vision_config') {
    const f = <T>(key: keyof typeof VISION_DEFAULTS) => field<T>(json, VISION_DEFAULTS, VISION_KINDS, key, where);
    this.hiddenSize = f('hidden_size');
    this.intermediateSize = f('intermediate_size');
    this.projectionDim = f('projection_dim');
    this.numHiddenLayers = f('num_hidden_layers');
    this.numAttentionHeads = f('num_attention_heads');
    this.numChannels = f('num_channels');
    this.imageSize = f('image_size');
    this.patchSize = f('patch_size');
    this.hiddenAct = f('hidden_act');
    this.layerNormEps = f('layer_norm_eps');
    this.attentionDropout = f('attention_dropout');
    this.initializerRange = f('initializer_range');
    this.initializerFactor = f('initializer_factor');
    for (const key of ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
      'num_channels', 'image_size', 'patch_size', 'layer_norm_eps'] as const) {
      positive(where, key, f<number>(key));
    }
    divisible(where, this.hiddenSize, this.numAttentionHeads);
    if (this.patchSize > this.imageSize) {
      throw new Error(`${where}: "patch_size" (${this.patchSize}) is larger than "image_size" (${this.imageSize})`);
    }
  }

  /** Number of patches per side at the configured image size. */
  get gridSize(): number {
    return Math.floor(this.imageSize / this.patchSize);
  }

  /** Like transformers': a full `altclip` config yields its `vision_config`. */
  static async fromPretrained(pathOrRepoId: string, options: PretrainedOptions = {}): Promise<AltCLIPVisionConfig> {
    const json = await readConfigJson(pathOrRepoId, options);
    if (json.model_type === 'altclip') {
      return new AltCLIPVisionConfig(asObject(json.vision_config ?? {}, 'config.json: "vision_config"'));
    }
    return new AltCLIPVisionConfig(json, 'config.json');
  }

  toJSON(): Json {
    return {
      hidden_size: this.hiddenSize, intermediate_size: this.intermediateSize,
      projection_dim: this.projectionDim, num_hidden_layers: this.numHiddenLayers,
      num_attention_heads: this.numAttentionHeads, num_channels: this.numChannels,
      image_size: this.imageSize, patch_size: this.patchSize, hidden_act: this.hiddenAct,
      layer_norm_eps: this.layerNormEps, attention_dropout: this.attentionDropout,
      initializer_range: this.initializerRange, initializer_factor: this.initializerFactor,
      model_type: AltCLIPVisionConfig.modelType,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// AltCLIPConfig: both towers plus the shared projection.

const MODEL_DEFAULTS = { projection_dim: 768, logit_scale_init_value: 2.6592 };
const MODEL_KINDS: Record<keyof typeof MODEL_DEFAULTS, FieldKind> = {
  projection_dim: 'int', logit_scale_init_value: 'number',
};

export class AltCLIPConfig {
  static readonly modelType = 'altclip';
  readonly textConfig: AltCLIPTextConfig;
  readonly visionConfig: AltCLIPVisionConfig;
  readonly projectionDim: number;
  readonly logitScaleInitValue: number;

  constructor(json: Json, where = 'config') {
    if (!('text_config' in json) || json.text_config === undefined || json.text_config === null) {
      throw new Error(`${where}: "text_config" is missing`);
    }
    if (!('vision_config' in json) || json.vision_config === undefined || json.vision_config === null) {
      throw new Error(`${where}: "vision_config" is missing`);
    }
    this.textConfig = new AltCLIPTextConfig(asObject(json.text_config, `${where}: "text_config"`), `${where}: text_config`);
    this.visionConfig = new AltCLIPVisionConfig(asObject(json.vision_config, `${where}: "vision_config"`), `${where}: vision_config`);
    const f = <T>(key: keyof typeof MODEL_DEFAULTS) => field<T>(json, MODEL_DEFAULTS, MODEL_KINDS, key, where);
    this.projectionDim = f('projection_dim');
    this.logitScaleInitValue = f('logit_scale_init_value');
    positive(where, 'projection_dim', this.projectionDim);
  }

  /** transformers' AltCLIPConfig.from_text_vision_configs. */
  static fromTextVisionConfigs(
    textConfig: AltCLIPTextConfig | Json,
    visionConfig: AltCLIPVisionConfig | Json,
    extra: Json = {},
  ): AltCLIPConfig {
    const text = textConfig instanceof AltCLIPTextConfig ? textConfig.toJSON() : textConfig;
    const vision = visionConfig instanceof AltCLIPVisionConfig ? visionConfig.toJSON() : visionConfig;
    return new AltCLIPConfig({ ...extra, text_config: text, vision_config: vision });
  }

  static async fromPretrained(pathOrRepoId: string, options: PretrainedOptions = {}): Promise<AltCLIPConfig> {
    const json = await readConfigJson(pathOrRepoId, options);
    if (json.model_type !== undefined && json.model_type !== 'altclip') {
      throw new Error(`${pathOrRepoId}: config.json has model_type ${JSON.stringify(json.model_type)}, expected "altclip"`);
    }
    return new AltCLIPConfig(json, `${pathOrRepoId}/config.json`);
  }

  toJSON(): Json {
    return {
      text_config: this.textConfig.toJSON(),
      vision_config: this.visionConfig.toJSON(),
      projection_dim: this.projectionDim,
      logit_scale_init_value: this.logitScaleInitValue,
      model_type: AltCLIPConfig.modelType,
    };
  }
}
