// The benchmark's checkpoint generator (bench/generate_checkpoint.ts) writes what transformers writes:
// run on the tiny fixture's config it must give exactly the fixture's tensor names and shapes, a
// config.json that reads back as the same config, and a checkpoint our model loads without a missing
// or unused weight; its full-size config must be BAAI/AltCLIP's. Seeded: same seed, same bytes.
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';

import { configJson, ensureCheckpoint, generatorConfig, LARGE, weightSpecs } from '../bench/generate_checkpoint.js';
import { AltCLIPConfig } from '../src/config.js';
import { AltCLIPModel } from '../src/models/altclip.js';
import { Tensor } from '../src/tensor.js';
import { openSafetensors } from '../src/weights/index.js';
import { FIXTURES } from './helpers/goldens.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-generator-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const TINY_DIR = path.join(FIXTURES, 'models', 'tiny-altclip');

const tinyConfig = new AltCLIPConfig(JSON.parse(fs.readFileSync(path.join(TINY_DIR, 'config.json'), 'utf8')));
const TINY = generatorConfig(tinyConfig);
const sha = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');

describe('bench/generate_checkpoint.ts', () => {
  it('on the tiny config: exactly the names and shapes of the fixture checkpoint transformers wrote', () => {
    const fixture = [...openSafetensors(path.join(TINY_DIR, 'model.safetensors')).values()]
      .filter((r) => !/position_ids$/.test(r.name)).map((r) => `${r.name} [${r.shape}]`).sort();
    const generated = weightSpecs(TINY).map((s) => `${s.name} [${s.shape}]`).sort();
    assert.deepEqual(generated, fixture);
  });

  it('config.json reads back as the config it was made from (tiny and BAAI/AltCLIP)', () => {
    assert.deepEqual(generatorConfig(new AltCLIPConfig(configJson(TINY))), TINY);
    const large = new AltCLIPConfig(configJson(LARGE));
    assert.deepEqual(generatorConfig(large), LARGE);
    // BAAI/AltCLIP: XLM-R large + ViT-L/14 at 224, quick_gelu, 768-d projections
    assert.equal(large.textConfig.hiddenAct, 'gelu');
    assert.equal(large.visionConfig.hiddenAct, 'quick_gelu');
    assert.deepEqual([large.visionConfig.patchSize, large.visionConfig.imageSize, large.visionConfig.hiddenSize], [14, 224, 1024]);
    const params = weightSpecs(LARGE).reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
    assert.ok(params > 860e6 && params < 870e6, `${params} parameters`); // BAAI/AltCLIP: 864M
  });

  it('writes a checkpoint our model loads with no missing or unused weight; same seed, same bytes', async () => {
    const quiet = () => {};
    const a = ensureCheckpoint(path.join(tmp, 'a'), 7, quiet, TINY);
    const b = ensureCheckpoint(path.join(tmp, 'b'), 7, quiet, TINY);
    const c = ensureCheckpoint(path.join(tmp, 'c'), 8, quiet, TINY);
    assert.equal(sha(path.join(a, 'model.safetensors')), sha(path.join(b, 'model.safetensors')));
    assert.notEqual(sha(path.join(a, 'model.safetensors')), sha(path.join(c, 'model.safetensors')));
    assert.ok(fs.readdirSync(tmp).every((f) => !f.includes('.tmp')), 'no temporary folder left');

    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      const model = await AltCLIPModel.fromPretrained(a, { graphCacheDir: path.join(tmp, 'graphs') });
      const ids = new Tensor('int64', new BigInt64Array([0n, 100n, 200n, 2n]), [1, 4]);
      const pixelValues = new Tensor('float32', new Float32Array(3 * 224 * 224).fill(0.5), [1, 3, 224, 224]);
      const out = await model.forward({ inputIds: ids, pixelValues });
      await model.dispose();
      for (const t of [out.textEmbeds, out.imageEmbeds, out.logitsPerImage]) {
        assert.ok((t.data as Float32Array).every(Number.isFinite));
      }
      // random weights with unit-variance scaling: features neither vanish nor blow up
      const norm = (t: Tensor) => Math.hypot(...(t.data as Float32Array));
      const tf = norm(out.textModelOutput.poolerOutput), vf = norm(out.visionModelOutput.poolerOutput);
      assert.ok(tf > 0.1 && tf < 1e3 && vf > 0.1 && vf < 1e3, `pooled norms ${tf}, ${vf}`);
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    assert.deepEqual(warnings.filter((w) => /were not used/.test(w)), []);
  });
});
