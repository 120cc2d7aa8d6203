// A full-size, seeded, random-weight AltCLIP checkpoint with a published model's config (src/config_presets.ts), for the
// benchmark. Weight names and shapes are exactly those transformers 4.40.2 writes for AltCLIPModel
// (test/fixtures/README.md "Weights"); values are random with scales that keep activations in a
// realistic range (Linear N(0,1)/sqrt(fan_in) keeps unit variance through each layer).
//
//   node --import tsx bench/generate_checkpoint.ts [--preset BAAI/AltCLIP|BAAI/AltCLIP-m9|BAAI/AltCLIP-m18] [--out DIR] [--seed N]
//   node --import tsx bench/generate_checkpoint.ts --config CONFIG.json --out DIR [--seed N] [--text-model]
//     (a checkpoint of any config.json, e.g. test/fixtures/models/tiny-altclip-m18; --text-model also writes
//     DIR/text_model, the text tower saved on its own)
//
// The safetensors file (3.4 GB, F32) is streamed to disk chunk by chunk; the folder is built under a
// temporary name and renamed when complete, so a present folder is always a whole checkpoint.
import { copyFileSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, writeSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AltCLIPConfig } from '../src/config.js';
import { configPreset, configPresetJson, CONFIG_PRESETS, type ConfigPresetName } from '../src/config_presets.js';
import { readSafetensors, safetensorsHeader, writeSafetensors } from './safetensors_io.js';

const here = dirname(fileURLToPath(import.meta.url));
export const DEFAULT_SEED = 1234;
/** bench/.cache/altclip-large-random-s<seed> for BAAI/AltCLIP, altclip-m18-random-s<seed> for BAAI/AltCLIP-m18, … */
export const defaultCheckpointDir = (seed = DEFAULT_SEED, preset: ConfigPresetName = 'BAAI/AltCLIP') =>
  join(here, '.cache', `${preset === 'BAAI/AltCLIP' ? 'altclip-large' : preset.replace(/^BAAI\/AltCLIP-/, 'altclip-')}-random-s${seed}`);

/** The shapes the generator needs, read from a transformers config. */
export interface Config {
  text: { vocab: number; hidden: number; layers: number; heads: number; ffn: number; maxPos: number; typeVocab: number; projectDim: number };
  vision: { hidden: number; layers: number; heads: number; ffn: number; patch: number; image: number; channels: number };
  projectionDim: number;
  logitScale: number;
}

export function generatorConfig(c: AltCLIPConfig): Config {
  const t = c.textConfig, v = c.visionConfig;
  return {
    text: { vocab: t.vocabSize, hidden: t.hiddenSize, layers: t.numHiddenLayers, heads: t.numAttentionHeads, ffn: t.intermediateSize,
      maxPos: t.maxPositionEmbeddings, typeVocab: t.typeVocabSize, projectDim: t.projectDim },
    vision: { hidden: v.hiddenSize, layers: v.numHiddenLayers, heads: v.numAttentionHeads, ffn: v.intermediateSize,
      patch: v.patchSize, image: v.imageSize, channels: v.numChannels },
    projectionDim: c.projectionDim,
    logitScale: c.logitScaleInitValue,
  };
}

// BAAI/AltCLIP: XLM-R large text tower, CLIP ViT-L/14 vision tower (src/config_presets.ts cites each value).
export const LARGE: Config = generatorConfig(configPreset('BAAI/AltCLIP'))

/** How a tensor's values are drawn: mean + std * N(0,1), or a constant. */
interface Init { mean: number; std: number }
interface Spec { name: string; shape: number[]; init: Init }

const linearW = (fanIn: number): Init => ({ mean: 0, std: 1 / Math.sqrt(fanIn) });
const BIAS: Init = { mean: 0, std: 0.02 };
const LN_W: Init = { mean: 1, std: 0.05 };
const LN_B: Init = { mean: 0, std: 0.02 };

export function weightSpecs(c: Config = LARGE): Spec[] {
  const s: Spec[] = [];
  const add = (name: string, shape: number[], init: Init) => s.push({ name, shape, init });
  const linear = (p: string, out: number, inp: number, bias = true) => {
    add(`${p}.weight`, [out, inp], linearW(inp));
    if (bias) add(`${p}.bias`, [out], BIAS);
  };
  const ln = (p: string, n: number) => { add(`${p}.weight`, [n], LN_W); add(`${p}.bias`, [n], LN_B); };

  add('logit_scale', [], { mean: c.logitScale, std: 0 });
  linear('text_projection', c.projectionDim, c.text.projectDim, false);
  linear('visual_projection', c.projectionDim, c.vision.hidden, false);

  const t = c.text, r = 'text_model.roberta';
  add(`${r}.embeddings.word_embeddings.weight`, [t.vocab, t.hidden], { mean: 0, std: 0.5 });
  add(`${r}.embeddings.position_embeddings.weight`, [t.maxPos, t.hidden], { mean: 0, std: 0.1 });
  add(`${r}.embeddings.token_type_embeddings.weight`, [t.typeVocab, t.hidden], { mean: 0, std: 0.1 });
  ln(`${r}.embeddings.LayerNorm`, t.hidden);
  for (let i = 0; i < t.layers; i++) {
    const l = `${r}.encoder.layer.${i}`;
    for (const q of ['query', 'key', 'value']) linear(`${l}.attention.self.${q}`, t.hidden, t.hidden);
    linear(`${l}.attention.output.dense`, t.hidden, t.hidden);
    ln(`${l}.attention.output.LayerNorm`, t.hidden);
    linear(`${l}.intermediate.dense`, t.ffn, t.hidden);
    linear(`${l}.output.dense`, t.hidden, t.ffn);
    ln(`${l}.output.LayerNorm`, t.hidden);
  }
  ln('text_model.pre_LN', t.hidden);
  linear('text_model.transformation', t.projectDim, t.hidden);

  const v = c.vision, e = 'vision_model.embeddings';
  const tokens = (v.image / v.patch) ** 2 + 1;
  add(`${e}.class_embedding`, [v.hidden], { mean: 0, std: 0.5 });
  add(`${e}.patch_embedding.weight`, [v.hidden, v.channels, v.patch, v.patch], linearW(v.channels * v.patch * v.patch));
  add(`${e}.position_embedding.weight`, [tokens, v.hidden], { mean: 0, std: 0.1 });
  ln('vision_model.pre_layrnorm', v.hidden);
  for (let i = 0; i < v.layers; i++) {
    const l = `vision_model.encoder.layers.${i}`;
    ln(`${l}.layer_norm1`, v.hidden);
    for (const q of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) linear(`${l}.self_attn.${q}`, v.hidden, v.hidden);
    ln(`${l}.layer_norm2`, v.hidden);
    linear(`${l}.mlp.fc1`, v.ffn, v.hidden);
    linear(`${l}.mlp.fc2`, v.hidden, v.ffn);
  }
  ln('vision_model.post_layernorm', v.hidden);
  return s.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** config.json as transformers 4.40.2 writes it: nested configs list only the values that differ from
 * AltCLIPTextConfig() / AltCLIPVisionConfig() defaults (BAAI/AltCLIP's text tower IS the default one). */
export function configJson(c: Config = LARGE): Record<string, unknown> {
  const differing = (pairs: [string, number, number][]) => Object.fromEntries(pairs.filter(([, v, d]) => v !== d).map(([k, v]) => [k, v]));
  const t = c.text, v = c.vision;
  return {
    architectures: ['AltCLIPModel'],
    initializer_factor: 1.0,
    logit_scale_init_value: c.logitScale,
    model_type: 'altclip',
    projection_dim: c.projectionDim,
    text_config: {
      model_type: 'altclip_text_model',
      ...differing([['vocab_size', t.vocab, 250002], ['hidden_size', t.hidden, 1024], ['num_hidden_layers', t.layers, 24],
        ['num_attention_heads', t.heads, 16], ['intermediate_size', t.ffn, 4096], ['max_position_embeddings', t.maxPos, 514],
        ['type_vocab_size', t.typeVocab, 1], ['project_dim', t.projectDim, 768]]),
    },
    torch_dtype: 'float32',
    transformers_version: '4.40.2',
    vision_config: {
      model_type: 'altclip_vision_model',
      projection_dim: c.projectionDim,
      ...differing([['hidden_size', v.hidden, 768], ['intermediate_size', v.ffn, 3072], ['num_attention_heads', v.heads, 12],
        ['num_hidden_layers', v.layers, 12], ['patch_size', v.patch, 32], ['image_size', v.image, 224], ['num_channels', v.channels, 3]]),
    },
  };
}

// ---- seeded normal samples: xoshiro128** seeded by splitmix32 of (seed, FNV-1a of the name), Box-Muller.

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

class NormalStream {
  private s0: number; private s1: number; private s2: number; private s3: number;
  constructor(seed: number) {
    let x = seed >>> 0;
    const splitmix = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = splitmix(); this.s1 = splitmix(); this.s2 = splitmix(); this.s3 = splitmix();
  }
  private next(): number {
    const r = Math.imul(((Math.imul(this.s1, 5) << 7) | (Math.imul(this.s1, 5) >>> 25)), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0; this.s3 ^= this.s1; this.s1 ^= this.s2; this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = (this.s3 << 11) | (this.s3 >>> 21);
    return r;
  }
  /** Fills `out` with mean + std * N(0,1). */
  fill(out: Float32Array, mean: number, std: number): void {
    const n = out.length;
    for (let i = 0; i < n; i += 2) {
      const u1 = ((this.next() >>> 8) + 1) * 5.960464477539063e-8; // (0, 1]
      const u2 = (this.next() >>> 8) * 5.960464477539063e-8;
      const rad = std * Math.sqrt(-2 * Math.log(u1));
      const ang = 6.283185307179586 * u2;
      out[i] = mean + rad * Math.cos(ang);
      if (i + 1 < n) out[i + 1] = mean + rad * Math.sin(ang);
    }
  }
}

const FIXTURE = resolve(here, '..', 'test', 'fixtures', 'models', 'tiny-altclip');
const PROCESSOR_FILES = ['sentencepiece.bpe.model', 'special_tokens_map.json', 'tokenizer_config.json', 'preprocessor_config.json'];

/** A random checkpoint of a published model's shapes; its config.json is the preset's dict. */
export function ensurePresetCheckpoint(preset: ConfigPresetName, dir = defaultCheckpointDir(DEFAULT_SEED, preset), seed = DEFAULT_SEED,
  log: (m: string) => void = (m) => { process.stderr.write(m); }): string {
  return ensureCheckpoint(dir, seed, log, generatorConfig(configPreset(preset)), configPresetJson(preset));
}

/** Writes the checkpoint folder unless it already exists; returns its path. */
export function ensureCheckpoint(dir = defaultCheckpointDir(), seed = DEFAULT_SEED, log: (m: string) => void = (m) => { process.stderr.write(m); },
  config: Config = LARGE, json: Record<string, unknown> = configJson(config)): string {
  if (existsSync(join(dir, 'model.safetensors')) && existsSync(join(dir, 'config.json'))) return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const specs = weightSpecs(config);
  const numel = (s: Spec) => s.shape.reduce((a, b) => a * b, 1);
  const total = specs.reduce((a, s) => a + numel(s), 0);
  const header = safetensorsHeader(specs.map((s) => ({ name: s.name, dtype: 'F32' as const, shape: s.shape })),
    { format: 'pt', generator: 'altclip bench/generate_checkpoint.ts', seed: String(seed) });
  const t0 = Date.now();
  const fd = openSync(join(tmp, 'model.safetensors'), 'w');
  try {
    writeSync(fd, header);
    const chunk = new Float32Array(1 << 20);
    const bytes = new Uint8Array(chunk.buffer);
    let done = 0, lastPct = -1;
    for (const s of specs) {
      const rng = new NormalStream((seed ^ fnv1a(s.name)) >>> 0);
      for (let left = numel(s); left > 0;) {
        const n = Math.min(left, chunk.length);
        const view = chunk.subarray(0, n);
        if (s.init.std === 0) view.fill(s.init.mean);
        else rng.fill(view, s.init.mean, s.init.std);
        writeSync(fd, bytes, 0, n * 4);
        left -= n; done += n;
        const pct = Math.floor((100 * done) / total);
        if (pct !== lastPct && pct % 10 === 0) { log(`  generating checkpoint: ${pct}%\n`); lastPct = pct; }
      }
    }
  } finally {
    closeSync(fd);
  }
  writeFileSync(join(tmp, 'config.json'), JSON.stringify(json, null, 2) + '\n');
  for (const f of PROCESSOR_FILES) copyFileSync(join(FIXTURE, f), join(tmp, f));
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  log(`  checkpoint: ${total} parameters (${(total * 4 / 2 ** 30).toFixed(2)} GiB) in ${((Date.now() - t0) / 1000).toFixed(1)} s -> ${dir}\n`);
  return dir;
}

/** `<dir>/text_model`: the text tower on its own, as `model.text_model.save_pretrained(<dir>/text_model)` writes
 * it (full AltCLIPTextConfig, weights without the `text_model.` prefix; test/fixtures/README.md). */
export function writeTextModelFolder(dir: string): string {
  const config = new AltCLIPConfig(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
  const out = join(dir, 'text_model');
  mkdirSync(out, { recursive: true });
  const tensors = readSafetensors(join(dir, 'model.safetensors'));
  const text = Object.fromEntries([...tensors].filter(([n]) => n.startsWith('text_model.')).map(([n, t]) => [n.slice('text_model.'.length), t]));
  writeSafetensors(join(out, 'model.safetensors'), text);
  const json = { architectures: ['AltCLIPTextModel'], ...config.textConfig.toJSON(), torch_dtype: 'float32', transformers_version: '4.40.2' };
  writeFileSync(join(out, 'config.json'), JSON.stringify(Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : 1))), null, 2) + '\n');
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (k: string) => { const i = process.argv.indexOf(k); return i >= 0 ? process.argv[i + 1] : undefined; };
  const seed = Number(arg('--seed') ?? DEFAULT_SEED);
  const configFile = arg('--config');
  if (configFile) {
    // any config.json (e.g. a tiny test fixture's): written as given, weights shaped by it
    const out = arg('--out');
    if (!out) throw new Error('--config needs --out');
    const json = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
    const dir = ensureCheckpoint(out, seed, undefined, generatorConfig(new AltCLIPConfig(json, configFile)), json);
    if (process.argv.includes('--text-model')) writeTextModelFolder(dir);
    console.log(dir);
  } else {
    const preset = (arg('--preset') ?? 'BAAI/AltCLIP') as ConfigPresetName;
    if (!(preset in CONFIG_PRESETS)) throw new Error(`--preset: unknown preset ${preset} (${Object.keys(CONFIG_PRESETS).join(', ')})`);
    console.log(ensurePresetCheckpoint(preset, arg('--out') ?? defaultCheckpointDir(seed, preset), seed));
  }
}
