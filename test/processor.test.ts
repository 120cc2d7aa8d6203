// AltCLIPProcessor vs the reference: from the image files and texts alone, the processor gives the
// goldens' input_ids / attention_mask / pixel_values exactly, and with the model reproduces the
// model goldens (combos of goldens/<checkpoint>.json).
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { AltCLIPModel } from '../src/models/altclip.js';
import { AltCLIPProcessor } from '../src/processor.js';
import type { Tensor } from '../src/tensor.js';
import { FIXTURES, Goldens } from './helpers/goldens.js';

const FIX = FIXTURES;
const graphCacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-processor-graphs-'));
after(() => fs.rmSync(graphCacheDir, { recursive: true, force: true }));

const pixelGoldens = new Goldens(path.join(FIX, 'image_processor', 'pixel_values.safetensors'));

interface Combo {
  name: string;
  texts: string[];
  images: string[];
  processor_call: { padding?: boolean | 'max_length'; max_length?: number };
  model_call: { pixel_values: { concatenate_along_dim0: string[] }; return_loss?: boolean };
}

function maxAbsDiff(t: Tensor, want: Float32Array): number {
  const a = t.data as Float32Array;
  assert.equal(a.length, want.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - want[i]));
  return m;
}

for (const ckptName of ['tiny-altclip', 'tiny-altclip-b']) {
  const ckpt = path.join(FIX, 'models', ckptName);
  const index = JSON.parse(fs.readFileSync(path.join(FIX, 'goldens', `${ckptName}.json`), 'utf8'));
  const goldens = new Goldens(path.join(FIX, 'goldens', `${ckptName}.safetensors`));

  describe(`AltCLIPProcessor ${ckptName}`, async () => {
    const processor = await AltCLIPProcessor.fromPretrained(ckpt);
    const model = await AltCLIPModel.fromPretrained(ckpt, { graphCacheDir, threads: 1 });
    after(() => model.dispose());

    for (const combo of index.combos as Combo[]) {
      it(`${combo.name}: inputs equal the reference, model outputs within 1e-4`, async () => {
        const inputs = await processor.process({
          text: combo.texts,
          images: combo.images.map((f) => path.join(FIX, f)),
          padding: combo.processor_call.padding,
          maxLength: combo.processor_call.max_length,
        });
        const ids = goldens.get(`${combo.name}/inputs/input_ids`);
        assert.equal(inputs.inputIds?.type, 'int64');
        assert.deepEqual(inputs.inputIds?.dims, ids.dims);
        assert.deepEqual([...(inputs.inputIds!.data as BigInt64Array)], [...(ids.data as BigInt64Array)]);
        assert.equal(inputs.attentionMask?.type, 'int64');
        assert.deepEqual([...(inputs.attentionMask!.data as BigInt64Array)], [...(goldens.get(`${combo.name}/inputs/attention_mask`).data as BigInt64Array)]);
        const want = pixelGoldens.concat(combo.model_call.pixel_values.concatenate_along_dim0);
        assert.equal(inputs.pixelValues?.type, 'float32');
        assert.deepEqual(inputs.pixelValues?.dims, want.dims);
        assert.equal(maxAbsDiff(inputs.pixelValues!, want.data as Float32Array), 0);

        const out = await model.forward({ ...(inputs as Required<typeof inputs>), returnLoss: combo.model_call.return_loss });
        const report: string[] = [];
        const check = (t: Tensor | undefined, name: string) => {
          assert.ok(t, `${name} missing`);
          const d = maxAbsDiff(t, goldens.get(`${combo.name}/outputs/${name}`).data as Float32Array);
          report.push(`${name} ${d.toExponential(1)}`);
          assert.ok(d <= 1e-4, `${combo.name} ${name}: max abs diff ${d}`);
        };
        check(out.logitsPerImage, 'logits_per_image');
        check(out.logitsPerText, 'logits_per_text');
        check(out.textEmbeds, 'text_embeds');
        check(out.imageEmbeds, 'image_embeds');
        if (combo.model_call.return_loss) check(out.loss, 'loss');
        console.log(`${ckptName} ${combo.name}: ${report.join(', ')}`);
      });
    }

    it('text only and images only, as in Python', async () => {
      const t = await processor.process({ text: 'a photo of a cat' });
      assert.deepEqual(Object.keys(t).sort(), ['attentionMask', 'inputIds']);
      assert.deepEqual([...(t.inputIds!.data as BigInt64Array)], [...(goldens.get('single/inputs/input_ids').data as BigInt64Array)]);
      const i = await processor.process({ images: path.join(FIX, 'images', 'cat.jpg') });
      assert.deepEqual(Object.keys(i), ['pixelValues']);
      assert.equal(maxAbsDiff(i.pixelValues!, pixelGoldens.get('pixel_values/cat').data as Float32Array), 0);
      await assert.rejects(processor.process({}), /either text or images/);
      // texts of different lengths need padding to make a tensor (transformers raises too)
      await assert.rejects(processor.process({ text: ['a', 'a much longer text than the first'] }), /padding/);
      // image options reach the image processor
      const small = await processor.process({ images: path.join(FIX, 'images', 'cat.jpg'), size: 64, cropSize: 64 });
      assert.deepEqual(small.pixelValues!.dims, [1, 3, 64, 64]);
    });
  });
}
