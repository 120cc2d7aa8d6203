// Configs: transformers' defaults fill sparse config.json files; invalid values name their key.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';

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
});
