// Config presets of the published checkpoints (src/config_presets.ts cites where each value comes from):
// each builds an AltCLIPConfig; BAAI/AltCLIP's is exactly what the benchmark generator used before it read
// the presets; AltCLIP-m18 is ViT-H/14 (16 heads of 80, gelu) + XLM-R large with 1024-d embeddings, and its
// parameter count matches the 4.78 GB float32 weights of the hub repository.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';

import { configJson, ensureCheckpoint, generatorConfig, LARGE, weightSpecs, type Config } from '../bench/generate_checkpoint.js';
import { AltCLIPConfig, CONFIG_PRESETS, configPreset, configPresetJson, type ConfigPresetName } from '../src/index.js';

const params = (c: Config) => weightSpecs(c).reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);

// bench/generate_checkpoint.ts's own copy of BAAI/AltCLIP's config, as it was before the presets existed
const GENERATOR_BEFORE: Config = {
  text: { vocab: 250002, hidden: 1024, layers: 24, heads: 16, ffn: 4096, maxPos: 514, typeVocab: 1, projectDim: 768 },
  vision: { hidden: 1024, layers: 24, heads: 16, ffn: 4096, patch: 14, image: 224, channels: 3 },
  projectionDim: 768,
  logitScale: 2.6592,
};

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-presets-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('config presets', () => {
  it('every preset builds an AltCLIPConfig that round-trips through toJSON', () => {
    assert.deepEqual(Object.keys(CONFIG_PRESETS).sort(), ['BAAI/AltCLIP', 'BAAI/AltCLIP-m18', 'BAAI/AltCLIP-m9']);
    for (const name of Object.keys(CONFIG_PRESETS) as ConfigPresetName[]) {
      const c = configPreset(name);
      assert.ok(c instanceof AltCLIPConfig);
      assert.deepEqual(new AltCLIPConfig(c.toJSON()).toJSON(), c.toJSON(), name);
      assert.equal(c.visionConfig.projectionDim, c.projectionDim, `${name}: vision_config.projection_dim`);
    }
  });

  it('hands out copies: changing one does not change the preset', () => {
    const j = configPresetJson('BAAI/AltCLIP');
    (j.vision_config as Record<string, unknown>).hidden_size = 8;
    assert.equal(configPreset('BAAI/AltCLIP').visionConfig.hiddenSize, 1024);
  });

  it('an unknown name is refused with the known ones listed', () => {
    assert.throws(() => configPreset('BAAI/AltCLIP-m3' as ConfigPresetName), /unknown config preset "BAAI\/AltCLIP-m3" \(known: BAAI\/AltCLIP, BAAI\/AltCLIP-m9, BAAI\/AltCLIP-m18\)/);
  });

  it('BAAI/AltCLIP: the same config as the benchmark generator used before (and uses now, from the preset)', () => {
    assert.deepEqual(configPreset('BAAI/AltCLIP').toJSON(), new AltCLIPConfig(configJson(GENERATOR_BEFORE)).toJSON());
    assert.deepEqual(LARGE, GENERATOR_BEFORE);
    const c = configPreset('BAAI/AltCLIP');
    assert.equal(c.textConfig.hiddenAct, 'gelu');
    assert.equal(c.visionConfig.hiddenAct, 'quick_gelu');
    const n = params(LARGE);
    assert.ok(n > 860e6 && n < 870e6, `${n} parameters`); // BAAI/AltCLIP: 864M
  });

  it('BAAI/AltCLIP-m9: BAAI/AltCLIP’s shapes (its 3.22 GB float32 weights are 864M parameters)', () => {
    assert.deepEqual(generatorConfig(configPreset('BAAI/AltCLIP-m9')), LARGE);
    assert.equal(configPreset('BAAI/AltCLIP-m9').visionConfig.hiddenAct, 'quick_gelu');
    assert.ok(Math.abs(params(LARGE) * 4 / 2 ** 30 - 3.22) < 0.01);
  });

  it('BAAI/AltCLIP-m18: ViT-H/14 (16 heads of 80, 5120, gelu) + XLM-R large, projection_dim 1024, ~1.19B parameters', () => {
    const c = configPreset('BAAI/AltCLIP-m18');
    const v = c.visionConfig, t = c.textConfig;
    assert.deepEqual([v.hiddenSize, v.numHiddenLayers, v.numAttentionHeads, v.hiddenSize / v.numAttentionHeads, v.intermediateSize],
      [1280, 32, 16, 80, 5120]);
    assert.deepEqual([v.hiddenAct, v.patchSize, v.imageSize, v.layerNormEps], ['gelu', 14, 224, 1e-5]);
    assert.equal(c.projectionDim, 1024);
    assert.deepEqual([t.vocabSize, t.hiddenSize, t.numHiddenLayers, t.numAttentionHeads, t.intermediateSize, t.maxPositionEmbeddings,
      t.typeVocabSize, t.hiddenAct, t.projectDim], [250002, 1024, 24, 16, 4096, 514, 1, 'gelu', 1024]);
    // the hub repository's float32 weights are 4.78 GB (pytorch_model.bin / model.safetensors)
    const n = params(generatorConfig(c));
    assert.ok(Math.abs(n * 4 / 1e9 - 4.78) < 0.02, `${n} parameters = ${(n * 4 / 1e9).toFixed(3)} GB`);
  });

  it('the generator writes the config.json it is given (a preset dict, unchanged)', () => {
    const tiny: Config = { text: { vocab: 100, hidden: 8, layers: 1, heads: 2, ffn: 5, maxPos: 20, typeVocab: 1, projectDim: 8 },
      vision: { hidden: 16, layers: 1, heads: 2, ffn: 7, patch: 112, image: 224, channels: 3 }, projectionDim: 4, logitScale: 2.6592 };
    const json = configJson(tiny);
    (json.vision_config as Record<string, unknown>).hidden_act = 'gelu';
    const dir = ensureCheckpoint(path.join(tmp, 'ckpt'), 3, () => {}, tiny, json);
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), json);
  });
});
