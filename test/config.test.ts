// Configs: transformers' defaults fill sparse config.json files; invalid values name their key.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';

import { AltCLIPConfig, AltCLIPTextConfig, AltCLIPVisionConfig } from '../src/config.js';
import { FIXTURES } from './helpers/goldens.js';

const golden = (name: string) => JSON.parse(fs.readFileSync(path.join(FIXTURES, 'goldens', `${name}.json`), 'utf8'));

describe('configs', () => {
  for (const name of ['tiny-altclip', 'tiny-altclip-b']) {
    it(`${name}: the sparse config.json resolves to what transformers used`, async () => {
      const config = await AltCLIPConfig.fromPretrained(path.join(FIXTURES, 'models', name));
      const resolved = golden(name).config_resolved;
      const ours = config.toJSON() as Record<string, Record<string, unknown>>;
      for (const tower of ['text_config', 'vision_config']) {
        for (const [key, value] of Object.entries(ours[tower]!)) {
          if (key in resolved[tower]) assert.deepEqual(value, resolved[tower][key], `${tower}.${key}`);
        }
      }
      assert.equal(config.projectionDim, resolved.projection_dim);
      assert.equal(config.logitScaleInitValue, resolved.logit_scale_init_value);
    });
  }

  it('defaults are transformers\' (ViT-B/32 vision, XLM-R large text)', () => {
    const text = new AltCLIPTextConfig();
    const vision = new AltCLIPVisionConfig();
    assert.equal(text.vocabSize, 250002);
    assert.equal(text.hiddenSize, 1024);
    assert.equal(text.numHiddenLayers, 24);
    assert.equal(text.projectDim, 768);
    assert.equal(text.layerNormEps, 1e-5);
    assert.equal(text.padTokenId, 1);
    assert.equal(vision.patchSize, 32);
    assert.equal(vision.hiddenSize, 768);
    assert.equal(vision.hiddenAct, 'quick_gelu');
    assert.equal(vision.projectionDim, 512);
    const full = new AltCLIPConfig({ text_config: {}, vision_config: {} });
    assert.equal(full.projectionDim, 768);
    assert.equal(full.logitScaleInitValue, 2.6592);
  });

  it('a full (non-sparse) config loads the same as the sparse one', async () => {
    const sparse = await AltCLIPConfig.fromPretrained(path.join(FIXTURES, 'models', 'tiny-altclip'));
    const full = new AltCLIPConfig(JSON.parse(JSON.stringify(sparse.toJSON())));
    assert.deepEqual(full.toJSON(), sparse.toJSON());
  });

  it('fromTextVisionConfigs', () => {
    const c = AltCLIPConfig.fromTextVisionConfigs(new AltCLIPTextConfig({ hidden_size: 64, num_attention_heads: 4 }),
      { patch_size: 14, image_size: 224 }, { projection_dim: 20 });
    assert.equal(c.textConfig.hiddenSize, 64);
    assert.equal(c.visionConfig.patchSize, 14);
    assert.equal(c.visionConfig.gridSize, 16);
    assert.equal(c.projectionDim, 20);
  });

  it('unknown keys are ignored', () => {
    const c = new AltCLIPConfig({ text_config: { foo: 1 }, vision_config: { bar: 'x' }, architectures: ['AltCLIPModel'], whatever: null });
    assert.equal(c.textConfig.hiddenSize, 1024);
  });

  it('the text and vision configs are picked out of a full altclip config.json', async () => {
    const dir = path.join(FIXTURES, 'models', 'tiny-altclip');
    assert.equal((await AltCLIPTextConfig.fromPretrained(dir)).hiddenSize, 32);
    assert.equal((await AltCLIPVisionConfig.fromPretrained(dir)).hiddenSize, 48);
    assert.equal((await AltCLIPTextConfig.fromPretrained(path.join(dir, 'text_model'))).hiddenSize, 32);
  });

  it('invalid values get an error naming the key', () => {
    assert.throws(() => new AltCLIPConfig({ vision_config: {} }), /"text_config" is missing/);
    assert.throws(() => new AltCLIPConfig({ text_config: {} }), /"vision_config" is missing/);
    assert.throws(() => new AltCLIPConfig({ text_config: { hidden_size: 30, num_attention_heads: 4 }, vision_config: {} }),
      /text_config: "hidden_size" \(30\) must be divisible by "num_attention_heads" \(4\)/);
    assert.throws(() => new AltCLIPConfig({ text_config: { hidden_size: '32' }, vision_config: {} }),
      /"hidden_size" must be an integer, got "32"/);
    assert.throws(() => new AltCLIPConfig({ text_config: {}, vision_config: { layer_norm_eps: 'small' } }),
      /vision_config: "layer_norm_eps" must be a number/);
    assert.throws(() => new AltCLIPConfig({ text_config: {}, vision_config: { hidden_act: 3 } }), /"hidden_act" must be a string/);
    assert.throws(() => new AltCLIPConfig({ text_config: [], vision_config: {} }), /"text_config": expected a JSON object/);
    assert.throws(() => new AltCLIPConfig({ text_config: {}, vision_config: { patch_size: 0 } }), /"patch_size" must be positive/);
  });

  it('the typed classes expose every field once, in camelCase, and toJSON gives them back in snake_case', () => {
    const text = new AltCLIPTextConfig({ hidden_size: 64, num_attention_heads: 4, bos_token_id: null });
    const json = text.toJSON();
    assert.deepEqual(Object.keys(json), ['vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads',
      'intermediate_size', 'hidden_act', 'hidden_dropout_prob', 'attention_probs_dropout_prob', 'max_position_embeddings',
      'type_vocab_size', 'initializer_range', 'initializer_factor', 'layer_norm_eps', 'pad_token_id', 'bos_token_id',
      'eos_token_id', 'position_embedding_type', 'use_cache', 'project_dim', 'model_type']);
    assert.equal(text.bosTokenId, null);
    assert.equal(text.attentionProbsDropoutProb, 0.1);
    assert.deepEqual(new AltCLIPTextConfig(json).toJSON(), json);
    const vision = new AltCLIPVisionConfig({ image_size: 336, patch_size: 14 });
    assert.equal(vision.gridSize, 24);
    assert.equal(vision.toJSON().image_size, 336);
  });
});

// Configs that parse but cannot be a model (issue 18): each is refused at load with an error naming
// config.json and the field, instead of hanging graph building (1e308 layers), overflowing the stack
// (65536 layers), aborting inside onnxruntime (hidden_act "toString" passed a plain object lookup)
// or loading a model that refuses every input (pad_token_id 1e9).
describe('hostile config.json files are refused at load, naming the file and the field', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-config-'));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const base = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'models', 'tiny-altclip', 'config.json'), 'utf8'));
  let n = 0;
  const folderWith = (configText: string): string => {
    const dir = path.join(tmp, `m${n++}`);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'config.json'), configText);
    return dir;
  };
  const cases: [string, string, Record<string, unknown>, RegExp][] = [
    ['num_hidden_layers 1e308', 'text_config', { num_hidden_layers: 1e308 }, /text_config: "num_hidden_layers" must be an integer|"num_hidden_layers" must be at most 512/],
    ['num_hidden_layers 65536', 'vision_config', { num_hidden_layers: 65536 }, /vision_config: "num_hidden_layers" must be at most 512, got 65536/],
    ['hidden_act "toString"', 'text_config', { hidden_act: 'toString' }, /text_config: "hidden_act" must be one of "gelu".*got "toString"/],
    ['hidden_act "constructor"', 'vision_config', { hidden_act: 'constructor' }, /vision_config: "hidden_act" must be one of/],
    ['hidden_act "__proto__"', 'vision_config', { hidden_act: '__proto__' }, /vision_config: "hidden_act" must be one of/],
    ['pad_token_id 1e9', 'text_config', { pad_token_id: 1e9 }, /text_config: "pad_token_id" must be at most|"pad_token_id" \(1000000000\) must be below "vocab_size"/],
    ['pad_token_id past the vocabulary', 'text_config', { pad_token_id: 300000 }, /text_config: "pad_token_id" \(300000\) must be below "vocab_size"/],
    ['no position left after the padding', 'text_config', { pad_token_id: 1, max_position_embeddings: 2 }, /"max_position_embeddings" \(2\) leaves no position/],
    ['negative eos_token_id', 'text_config', { eos_token_id: -5 }, /"eos_token_id" must be at least 0 or null, got -5/],
    ['layer_norm_eps 0', 'text_config', { layer_norm_eps: 0 }, /"layer_norm_eps" must be positive, got 0/],
    ['dropout above 1', 'text_config', { hidden_dropout_prob: 7 }, /"hidden_dropout_prob" must be at most 1, got 7/],
    ['hidden_size 2^40', 'vision_config', { hidden_size: 2 ** 40, num_attention_heads: 1 }, /"hidden_size" must be at most 65536/],
    ['a million patches', 'vision_config', { image_size: 16384, patch_size: 16 }, /gives 1048576 patches/],
    ['num_channels 1e6', 'vision_config', { num_channels: 1e6 }, /"num_channels" must be at most 16/],
    ['position_embedding_type "relative_key"', 'text_config', { position_embedding_type: 'relative_key' }, /"position_embedding_type" must be one of "absolute"/],
  ];
  for (const [label, tower, patch, message] of cases) {
    it(label, async () => {
      const dir = folderWith(JSON.stringify({ ...base, [tower]: { ...base[tower], ...patch } }));
      await assert.rejects(AltCLIPConfig.fromPretrained(dir), (e: Error) => {
        assert.match(e.message, message);
        assert.ok(e.message.includes(`${dir}/config.json`), e.message);
        return true;
      });
    });
  }

  it('projection_dim and logit_scale_init_value too', async () => {
    await assert.rejects(AltCLIPConfig.fromPretrained(folderWith(JSON.stringify({ ...base, projection_dim: -1 }))),
      /config\.json: "projection_dim" must be positive, got -1/);
    await assert.rejects(AltCLIPConfig.fromPretrained(folderWith(JSON.stringify({ ...base, logit_scale_init_value: 1e300 }))),
      /config\.json: "logit_scale_init_value" must be at most 10000/);
  });

  it('100k nested lists: refused before parsing, with the file name (no stack overflow)', async () => {
    const deep = `{"text_config": {}, "vision_config": {}, "architectures": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    const dir = folderWith(deep);
    await assert.rejects(AltCLIPConfig.fromPretrained(dir), (e: Error) => {
      assert.match(e.message, /config\.json: invalid config\.json \(JSON nested deeper than 16 levels\)/);
      assert.ok(e.message.includes(dir));
      return true;
    });
    // a deep value in a field is described briefly, not serialised
    const d = JSON.parse(`${'['.repeat(100_000)}${']'.repeat(100_000)}`);
    assert.throws(() => new AltCLIPTextConfig({ hidden_size: d }), (e: Error) => e.message.length < 300 && /"hidden_size" must be an integer, got \[\[\[/.test(e.message));
  });

  it('inherited property names are not config keys', () => {
    const json = JSON.parse('{"text_config": {}, "vision_config": {}}');
    assert.equal(new AltCLIPConfig(json).textConfig.hiddenSize, 1024);
    assert.throws(() => new AltCLIPConfig({ text_config: {} }), /"vision_config" is missing/);
  });
});
