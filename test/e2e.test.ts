// End to end, from image files and strings alone: AltCLIPProcessor + AltCLIPModel reproduce the
// reference's outputs for every golden combo (the README's example, run on the fixture checkpoints).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';

import { AltCLIPModel, AltCLIPProcessor } from '../src/index.js';
import { assertClose, FIXTURES, Goldens } from './helpers/goldens.js';

const graphCacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-e2e-'));
after(() => fs.rmSync(graphCacheDir, { recursive: true, force: true }));
const pixels = new Goldens(path.join(FIXTURES, 'image_processor', 'pixel_values.safetensors'));

for (const name of ['tiny-altclip', 'tiny-altclip-b']) {
  describe(`processor + model from files: ${name}`, async () => {
    const ckpt = path.join(FIXTURES, 'models', name);
    const index = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'goldens', `${name}.json`), 'utf8'));
    const g = new Goldens(path.join(FIXTURES, 'goldens', `${name}.safetensors`));
    const model = await AltCLIPModel.fromPretrained(ckpt, { graphCacheDir });
    const processor = await AltCLIPProcessor.fromPretrained(ckpt);
    after(() => model.dispose());

    for (const combo of index.combos) {
      it(combo.name, async () => {
        const call = combo.processor_call;
        const inputs = await processor.process({
          text: combo.texts,
          images: combo.images.map((f: string) => path.join(FIXTURES, f)),
          padding: call.padding,
          ...(call.max_length ? { maxLength: call.max_length } : {}),
        });
        assert.deepEqual(inputs.inputIds!.data, g.get(`${combo.name}/inputs/input_ids`).data, 'input_ids');
        assert.deepEqual(inputs.attentionMask!.data, g.get(`${combo.name}/inputs/attention_mask`).data, 'attention_mask');
        assertClose(inputs.pixelValues!, pixels.concat(combo.model_call.pixel_values.concatenate_along_dim0), 1e-6, `${combo.name}/e2e/pixel_values`);
        const out = await model.forward({ ...inputs, inputIds: inputs.inputIds!, pixelValues: inputs.pixelValues! });
        assertClose(out.logitsPerImage, g.get(`${combo.name}/outputs/logits_per_image`), 1e-4, `${combo.name}/e2e/logits_per_image`);
        assertClose(out.textEmbeds, g.get(`${combo.name}/outputs/text_embeds`), 1e-5, `${combo.name}/e2e/text_embeds`);
        assertClose(out.imageEmbeds, g.get(`${combo.name}/outputs/image_embeds`), 1e-5, `${combo.name}/e2e/image_embeds`);
      });
    }
  });
}
