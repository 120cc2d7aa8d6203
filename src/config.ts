// AltCLIP configurations, mirroring transformers' configuration_altclip.py (4.40.2).
// config.json is sparse: transformers writes nested configs as a diff against the class defaults,
// so every missing key takes the default below. Unknown keys are ignored.
//
// Each config class is one table: a field's snake_case key, default, type and sane range are
// written once, and drive the typed property (camelCase), parsing, validation and toJSON. The
// ranges are wider than any real checkpoint's and narrow enough that a config which passes can be
// built into a model: a config.json is untrusted input (num_hidden_layers 1e308 would hang graph
// building, hidden_act "toString" would pass a plain object lookup, pad_token_id 1e9 would leave
// no room for a single token).
import * as fs from 'node:fs';

import { resolveFile, type PretrainedOptions } from './hub/index.js';
import { describe, parseJsonBounded } from './untrusted.js';

type Json = Record<string, unknown>;

/** One config field: its default and how a config.json value is checked. */
interface Field<T> {
  readonly default: T;
  /** The value, or a call to `bad(what it must be)`. */
  check(value: unknown, bad: (want: string) => never): T;
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/** An integer in [min, max]. */
function int(def: number, min: number, max: number): Field<number> {
  return {
    default: def,
    check(v, bad) {
      if (!isInt(v)) return bad('an integer');
      if (v < min) return bad(min === 1 ? 'positive' : `at least ${min}`);
      if (v > max) return bad(`at most ${max}`);
      return v;
    },
  };
}

/** An integer in [min, max], or null. */
function intOrNull(def: number | null, min: number, max: number): Field<number | null> {
  const f = int(0, min, max);
  return { default: def, check: (v, bad) => (v === null ? null : f.check(v, (want) => bad(`${want} or null`))) };
}

/** A finite number in [min, max]; `min` = Number.MIN_VALUE means "positive". */
function num(def: number, min: number, max = Number.MAX_VALUE): Field<number> {
  return {
    default: def,
    check(v, bad) {
      if (typeof v !== 'number' || !Number.isFinite(v)) return bad('a number');
      if (v < min) return bad(min === Number.MIN_VALUE ? 'positive' : `at least ${min}`);
      if (v > max) return bad(`at most ${max}`);
      return v;
    },
  };
}

/** One of `allowed` (compared as own values, never looked up as object properties). */
function oneOf<const S extends string>(def: S, allowed: readonly S[], note = ''): Field<string> {
  return {
    default: def,
    check(v, bad) {
      if (typeof v !== 'string') return bad('a string');
      if (!(allowed as readonly string[]).includes(v)) return bad(`one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}${note}`);
      return v;
    },
  };
}

function bool(def: boolean): Field<boolean> {
  return { default: def, check: (v, bad) => (typeof v === 'boolean' ? v : bad('a boolean')) };
}

// Sane ranges: far above any released checkpoint (the deepest have ~130 layers, the widest ~20k
// hidden units, the largest vocabularies ~260k), far below what would exhaust time or memory.
const MAX_LAYERS = 512;
const MAX_WIDTH = 65536;
const MAX_FFN = 262144;
const MAX_HEADS = 1024;
const MAX_VOCAB = 1 << 24;
const MAX_POSITIONS = 1 << 20;
/** Vision positions (patches + 1): 65536 is a 256 x 256 grid (ViT-L/14 at 336 px has 24 x 24). */
const MAX_PATCHES = 65536;

/** transformers 4.40.2 activations.py ACT2CLS: the names `hidden_act` may take. */
export const HIDDEN_ACTS = [
  'gelu', 'gelu_10', 'gelu_fast', 'gelu_new', 'gelu_python', 'gelu_pytorch_tanh', 'gelu_accurate', 'laplace',
  'leaky_relu', 'linear', 'mish', 'quick_gelu', 'relu', 'relu2', 'relu6', 'sigmoid', 'silu', 'swish', 'tanh',
] as const;

const probability = (def: number) => num(def, 0, 1);

// ---------------------------------------------------------------------------------------------
// The tables. Order = transformers' __init__ argument order = toJSON's key order.

/** AltCLIPTextConfig: an XLM-RoBERTa encoder plus AltCLIP's pre_LN + transformation head. */
const TEXT_FIELDS = {
  vocab_size: int(250002, 1, MAX_VOCAB),
  hidden_size: int(1024, 1, MAX_WIDTH),
  num_hidden_layers: int(24, 1, MAX_LAYERS),
  num_attention_heads: int(16, 1, MAX_HEADS),
  intermediate_size: int(4096, 1, MAX_FFN),
  hidden_act: oneOf('gelu', HIDDEN_ACTS),
  hidden_dropout_prob: probability(0.1),
  attention_probs_dropout_prob: probability(0.1),
  max_position_embeddings: int(514, 1, MAX_POSITIONS),
  type_vocab_size: int(1, 1, MAX_HEADS),
  initializer_range: num(0.02, 0),
  initializer_factor: num(0.02, 0),
  layer_norm_eps: num(1e-5, Number.MIN_VALUE, 1),
  pad_token_id: int(1, 0, MAX_VOCAB - 1),
  bos_token_id: intOrNull(0, 0, MAX_VOCAB - 1),
  eos_token_id: intOrNull(2, 0, MAX_VOCAB - 1),
  position_embedding_type: oneOf('absolute', ['absolute'], ' (the only one AltCLIP uses)'),
  use_cache: bool(true),
  project_dim: int(768, 1, MAX_WIDTH),
};

/** AltCLIPVisionConfig: a CLIP ViT. The defaults are ViT-B/32 (BAAI/AltCLIP itself is ViT-L/14). */
const VISION_FIELDS = {
  hidden_size: int(768, 1, MAX_WIDTH),
  intermediate_size: int(3072, 1, MAX_FFN),
  projection_dim: int(512, 1, MAX_WIDTH),
  num_hidden_layers: int(12, 1, MAX_LAYERS),
  num_attention_heads: int(12, 1, MAX_HEADS),
  num_channels: int(3, 1, 16),
  image_size: int(224, 1, 16384),
  patch_size: int(32, 1, 16384),
  hidden_act: oneOf('quick_gelu', HIDDEN_ACTS),
  layer_norm_eps: num(1e-5, Number.MIN_VALUE, 1),
  attention_dropout: probability(0.0),
  initializer_range: num(0.02, 0),
  initializer_factor: num(1.0, 0),
};

/** AltCLIPConfig's own fields (besides the two tower configs). */
const MODEL_FIELDS = {
  projection_dim: int(768, 1, MAX_WIDTH),
  logit_scale_init_value: num(2.6592, -1e4, 1e4),
};

// ---------------------------------------------------------------------------------------------
// Table -> typed properties, parsing, toJSON.

type Table = Record<string, Field<unknown>>;
type Camel<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<Camel<T>>}` : S;
/** The typed, read-only properties a table gives its class: `vocab_size` -> `vocabSize: number`. */
type Props<F extends Table> = { readonly [K in keyof F & string as Camel<K>]: F[K] extends Field<infer T> ? T : never };

const camel = (key: string) => key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/** Sets `target`'s properties from `json` (missing keys take the defaults); errors name the key. */
function readFields(target: object, table: Table, json: Json, where: string): void {
  for (const [key, field] of Object.entries(table)) {
    const value = Object.hasOwn(json, key) && json[key] !== undefined ? json[key] : field.default;
    const bad = (want: string): never => {
      throw new Error(`${where}: "${key}" must be ${want}, got ${describe(value)}`);
    };
    Object.defineProperty(target, camel(key), { value: field.check(value, bad), enumerable: true });
  }
}

function writeFields(source: object, table: Table): Json {
  return Object.fromEntries(Object.keys(table).map((key) => [key, (source as Json)[camel(key)]]));
}

function relation(ok: boolean, where: string, problem: string): void {
  if (!ok) throw new Error(`${where}: ${problem}`);
}

function divisible(where: string, hiddenSize: number, heads: number): void {
  relation(hiddenSize % heads === 0, where,
    `"hidden_size" (${hiddenSize}) must be divisible by "num_attention_heads" (${heads})`);
}

function asObject(value: unknown, where: string): Json {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`${where}: expected a JSON object, got ${describe(value)}`);
  }
  return value as Json;
}

/** Real config.json files nest 3 levels (config, text_config, a list such as architectures). */
const MAX_CONFIG_DEPTH = 16;
/** Real config.json files are a few KB. */
const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

/** A tower's config.json: the file itself, or the `text_config` / `vision_config` of a full `altclip` one. */
async function readTowerConfigJson(pathOrRepoId: string, options: PretrainedOptions,
  key: 'text_config' | 'vision_config'): Promise<{ json: Json; where: string }> {
  const { file, json } = await readConfigJson(pathOrRepoId, options);
  if (json.model_type !== 'altclip') return { json, where: file };
  return { json: asObject(json[key] ?? {}, `${file}: "${key}"`), where: `${file}: ${key}` };
}

async function readConfigJson(pathOrRepoId: string, options: PretrainedOptions): Promise<{ file: string; json: Json }> {
  const file = (await resolveFile(pathOrRepoId, 'config.json', options))!;
  let text: string;
  try {
    if (fs.statSync(file).size > MAX_CONFIG_BYTES) throw new Error(`over ${MAX_CONFIG_BYTES} bytes`);
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read config (${(e as Error).message})`);
  }
  try {
    return { file, json: asObject(parseJsonBounded(text, MAX_CONFIG_DEPTH), file) };
  } catch (e) {
    throw new Error(`${file}: invalid config.json (${(e as Error).message})`);
  }
}

// ---------------------------------------------------------------------------------------------

export interface AltCLIPTextConfig extends Props<typeof TEXT_FIELDS> {}

export class AltCLIPTextConfig {
  static readonly modelType = 'altclip_text_model';

  /** From a (possibly sparse) `text_config` dict in transformers' snake_case. */
  constructor(json: Json = {}, where = 'text_config') {
    readFields(this, TEXT_FIELDS, json, where);
    divisible(where, this.hiddenSize, this.numAttentionHeads);
    for (const key of ['pad_token_id', 'bos_token_id', 'eos_token_id'] as const) {
      const id = this[camel(key) as 'padTokenId' | 'bosTokenId' | 'eosTokenId'];
      relation(id === null || id < this.vocabSize, where, `"${key}" (${id}) must be below "vocab_size" (${this.vocabSize})`);
    }
    // modeling_roberta create_position_ids_from_input_ids: positions start at padding_idx + 1
    relation(this.maxPositionEmbeddings - this.padTokenId - 1 >= 1, where,
      `"max_position_embeddings" (${this.maxPositionEmbeddings}) leaves no position for a token after "pad_token_id" (${this.padTokenId}) + 1`);
  }

  /**
   * Like transformers' AltCLIPTextConfig.from_pretrained, except that a full `altclip` config
   * yields its `text_config` (transformers 4.40.2 silently builds a default-size model there).
   */
  static async fromPretrained(pathOrRepoId: string, options: PretrainedOptions = {}): Promise<AltCLIPTextConfig> {
    const { json, where } = await readTowerConfigJson(pathOrRepoId, options, 'text_config');
    return new AltCLIPTextConfig(json, where);
  }

  toJSON(): Json {
    return { ...writeFields(this, TEXT_FIELDS), model_type: AltCLIPTextConfig.modelType };
  }
}

// ---------------------------------------------------------------------------------------------

export interface AltCLIPVisionConfig extends Props<typeof VISION_FIELDS> {}

export class AltCLIPVisionConfig {
  static readonly modelType = 'altclip_vision_model';

  constructor(json: Json = {}, where = 'vision_config') {
    readFields(this, VISION_FIELDS, json, where);
    divisible(where, this.hiddenSize, this.numAttentionHeads);
    relation(this.patchSize <= this.imageSize, where,
      `"patch_size" (${this.patchSize}) is larger than "image_size" (${this.imageSize})`);
    relation(this.gridSize ** 2 + 1 <= MAX_PATCHES, where,
      `"image_size" (${this.imageSize}) / "patch_size" (${this.patchSize}) gives ${this.gridSize ** 2} patches, over the ${MAX_PATCHES - 1} any ViT uses`);
  }

  /** Number of patches per side at the configured image size. */
  get gridSize(): number {
    return Math.floor(this.imageSize / this.patchSize);
  }

  /** Like transformers': a full `altclip` config yields its `vision_config`. */
  static async fromPretrained(pathOrRepoId: string, options: PretrainedOptions = {}): Promise<AltCLIPVisionConfig> {
    const { json, where } = await readTowerConfigJson(pathOrRepoId, options, 'vision_config');
    return new AltCLIPVisionConfig(json, where);
  }

  toJSON(): Json {
    return { ...writeFields(this, VISION_FIELDS), model_type: AltCLIPVisionConfig.modelType };
  }
}

// ---------------------------------------------------------------------------------------------

export interface AltCLIPConfig extends Props<typeof MODEL_FIELDS> {}

/** Both towers plus the shared projection. */
export class AltCLIPConfig {
  static readonly modelType = 'altclip';
  readonly textConfig: AltCLIPTextConfig;
  readonly visionConfig: AltCLIPVisionConfig;

  constructor(json: Json, where = 'config') {
    for (const key of ['text_config', 'vision_config']) {
      if (!Object.hasOwn(json, key) || json[key] === undefined || json[key] === null) throw new Error(`${where}: "${key}" is missing`);
    }
    this.textConfig = new AltCLIPTextConfig(asObject(json.text_config, `${where}: "text_config"`), `${where}: text_config`);
    this.visionConfig = new AltCLIPVisionConfig(asObject(json.vision_config, `${where}: "vision_config"`), `${where}: vision_config`);
    readFields(this, MODEL_FIELDS, json, where);
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
    const { file, json } = await readConfigJson(pathOrRepoId, options);
    if (json.model_type !== undefined && json.model_type !== 'altclip') {
      throw new Error(`${file}: config.json has model_type ${describe(json.model_type)}, expected "altclip"`);
    }
    return new AltCLIPConfig(json, `${pathOrRepoId}/config.json`);
  }

  toJSON(): Json {
    return {
      text_config: this.textConfig.toJSON(),
      vision_config: this.visionConfig.toJSON(),
      ...writeFields(this, MODEL_FIELDS),
      model_type: AltCLIPConfig.modelType,
    };
  }
}
