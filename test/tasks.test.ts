// The tasks on the fixture checkpoint against the Python reference's goldens: classification scores =
// softmax of logits_per_image, similarity = logits_per_image (and / exp(logit_scale) for the cosine),
// embeddings = text_embeds / image_embeds (normalised) and get_*_features (raw).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { AltCLIPModel } from '../src/models/altclip.js';
import { AltCLIPProcessor } from '../src/processor.js';
import {
  embedImages, embedTexts, imageTextSimilarity, loadAltCLIP, logitScale, pipeline, zeroShotImageClassification, type AltCLIPParts,
} from '../src/tasks/index.js';
import { Tensor } from '../src/tensor.js';
import { assertClose, FIXTURES, Goldens, maxDiffByFamily, printDiffTable } from './helpers/goldens.js';

const graphCacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-tasks-'));
after(() => {
  printDiffTable('tasks: max abs difference vs the reference:');
  fs.rmSync(graphCacheDir, { recursive: true, force: true });
});

interface Combo { name: string; texts: string[]; images: string[] }

function softmax(row: number[]): number[] {
  const m = Math.max(...row);
  const e = row.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

function matrix(t: Tensor): number[][] {
  const [r, c] = t.dims as [number, number];
  return Array.from({ length: r }, (_, i) => [...(t.data as Float32Array).subarray(i * c, (i + 1) * c)]);
}

function maxDiff(a: number[][], b: number[][], family: string): number {
  assert.deepEqual([a.length, a[0]?.length], [b.length, b[0]?.length], 'shape');
  const d = Math.max(...a.flatMap((r, i) => r.map((x, j) => Math.abs(x - b[i]![j]!))));
  maxDiffByFamily.set(family, Math.max(maxDiffByFamily.get(family) ?? 0, d));
  return d;
}

for (const name of ['tiny-altclip', 'tiny-altclip-b']) {
  describe(`tasks on ${name}`, () => {
    const ckpt = path.join(FIXTURES, 'models', name);
    const index = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'goldens', `${name}.json`), 'utf8'));
    const g = new Goldens(path.join(FIXTURES, 'goldens', `${name}.safetensors`));
    const scale: number = index.logit_scale_exp;
    let clip: AltCLIPParts;
    before(async () => {
      clip = {
        model: await AltCLIPModel.fromPretrained(ckpt, { graphCacheDir, threads: 1 }),
        processor: await AltCLIPProcessor.fromPretrained(ckpt),
      };
    });
    after(() => clip.model.dispose());

    for (const combo of index.combos as Combo[]) {
      const images = combo.images.map((p) => path.join(FIXTURES, p));
      const golden = (t: string) => g.get(`${combo.name}/${t}`);

      it(`zeroShotImageClassification = softmax(logits_per_image): ${combo.name}`, async () => {
        const results = await zeroShotImageClassification(clip, images, combo.texts, { hypothesisTemplate: '{}', batchSize: 2 });
        const expected = matrix(golden('outputs/logits_per_image')).map(softmax);
        const got = results.map((r) => combo.texts.map((t) => r.find((x) => x.label === t)!.score));
        const d = maxDiff(got, expected, 'zero-shot scores');
        assert.ok(d <= 1e-5, `max score diff ${d}`);
        for (const r of results) for (let i = 1; i < r.length; i++) assert.ok(r[i - 1]!.score >= r[i]!.score, 'sorted');
      });

      it(`imageTextSimilarity = logits_per_image, cosine = logits / exp(logit_scale): ${combo.name}`, async () => {
        const r = await imageTextSimilarity(clip, images, combo.texts);
        const logits = matrix(golden('outputs/logits_per_image'));
        const dl = maxDiff(r.logitsPerImage, logits, 'similarity logitsPerImage');
        const dc = maxDiff(r.cosine, logits.map((row) => row.map((x) => x / scale)), 'similarity cosine');
        assert.ok(dl <= 1e-5 * scale, `max logit diff ${dl}`);
        assert.ok(dc <= 1e-5, `max cosine diff ${dc}`);
      });

      it(`embedImages / embedTexts = image_embeds / text_embeds (raw: get_*_features): ${combo.name}`, async () => {
        assertClose(await embedImages(clip, images, { batchSize: 2 }), golden('outputs/image_embeds'), 1e-5, `${combo.name}/image_embeds`);
        assertClose(await embedTexts(clip, combo.texts, { batchSize: 2 }), golden('outputs/text_embeds'), 1e-5, `${combo.name}/text_embeds`);
        assertClose(await embedImages(clip, images, { normalize: false }), golden('get_image_features'), 1e-4, `${combo.name}/get_image_features`);
        assertClose(await embedTexts(clip, combo.texts, { normalize: false }), golden('get_text_features'), 1e-4, `${combo.name}/get_text_features`);
      });
    }

    it('logitScale: exp(logit_scale) in float32', () => {
      assert.equal(logitScale(clip), Math.fround(scale));
    });

    it('the default template and prompt ensembling agree with the embeddings', async () => {
      const labels = ['cat', '猫', 'a dog'];
      const templates = ['This is a photo of {}.', 'a picture of {}', '{}'];
      const image = path.join(FIXTURES, 'images', 'cat.jpg');
      const imageEmbeds = matrix(await embedImages(clip, image))[0]!;
      const check = async (tpls: string[], result: { label: string; score: number }[]) => {
        const textEmbeds = matrix(await embedTexts(clip, labels.flatMap((l) => tpls.map((t) => t.replace('{}', l)))));
        const logits = labels.map((_, j) => {
          const mean = textEmbeds.slice(j * tpls.length, (j + 1) * tpls.length).reduce((a, v) => a.map((x, k) => x + v[k]!), new Array(imageEmbeds.length).fill(0));
          const n = Math.hypot(...mean);
          return scale * mean.reduce((s, x, k) => s + (x / n) * imageEmbeds[k]!, 0);
        });
        const expected = softmax(logits);
        for (const { label, score } of result) assert.ok(Math.abs(score - expected[labels.indexOf(label)]!) <= 1e-5, label);
      };
      await check([templates[0]!], await zeroShotImageClassification(clip, image, labels));
      await check(templates, await zeroShotImageClassification(clip, image, labels, { hypothesisTemplate: templates }));
    });
  });
}

describe('pipeline() on a model folder', () => {
  it('zero-shot-image-classification: one image, topK', async () => {
    const ckpt = path.join(FIXTURES, 'models', 'tiny-altclip');
    const g = new Goldens(path.join(FIXTURES, 'goldens', 'tiny-altclip.safetensors'));
    const classify = await pipeline('zero-shot-image-classification', ckpt, { graphCacheDir, threads: 1 });
    try {
      const texts = ['a photo of a cat', '一张猫的照片 🐱', 'a very long description of a small fluffy orange cat sleeping on a sofa'];
      const result = await classify(path.join(FIXTURES, 'images', 'cat.jpg'), texts, { hypothesisTemplate: '{}', topK: 2 });
      const expected = softmax(matrix(g.get('batch3/outputs/logits_per_image'))[0]!);
      const best = expected.map((s, j) => ({ label: texts[j]!, score: s })).sort((a, b) => b.score - a.score).slice(0, 2);
      assert.deepEqual(result.map((r) => r.label), best.map((r) => r.label));
      for (let i = 0; i < 2; i++) assert.ok(Math.abs(result[i]!.score - best[i]!.score) <= 1e-5);
    } finally {
      await classify.dispose();
    }
  });
});

describe('loadAltCLIP: identity and parts', () => {
  const folder = path.join(FIXTURES, 'models', 'tiny-altclip');
  const g = new Goldens(path.join(FIXTURES, 'goldens', 'tiny-altclip.safetensors'));
  const batch3 = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'goldens', 'tiny-altclip.json'), 'utf8')).combos
    .find((c: Combo) => c.name === 'batch3') as Combo;

  it('a local folder: its real path, no revision, the dtype and projection_dim', async () => {
    // a relative path through a symlink names the same folder
    const link = path.join(graphCacheDir, 'link-to-tiny');
    fs.symlinkSync(path.resolve(folder), link);
    const clip = await loadAltCLIP(path.relative(process.cwd(), link), { graphCacheDir, threads: 1, dtype: 'q8' });
    try {
      assert.deepEqual(clip.identity, { model: fs.realpathSync(folder), revision: null, dtype: 'q8', projectionDim: 24 });
    } finally {
      await clip.model.dispose();
    }
  });

  it('a hub repo: the repo id and the commit its files came from (an offline cache in huggingface_hub layout)', async () => {
    const commit = '0123456789abcdef0123456789abcdef01234567';
    const cacheDir = fs.mkdtempSync(path.join(graphCacheDir, 'hub-'));
    const repo = path.join(cacheDir, 'models--BAAI--tiny-altclip');
    fs.mkdirSync(path.join(repo, 'refs'), { recursive: true });
    fs.writeFileSync(path.join(repo, 'refs', 'main'), commit);
    fs.cpSync(folder, path.join(repo, 'snapshots', commit), { recursive: true });
    const clip = await loadAltCLIP('BAAI/tiny-altclip', { cacheDir, localFilesOnly: true, graphCacheDir, threads: 1 });
    try {
      assert.deepEqual(clip.identity, { model: 'BAAI/tiny-altclip', revision: commit, dtype: 'fp32', projectionDim: 24 });
    } finally {
      await clip.model.dispose();
    }
  });

  it('parts: "text" embeds texts (= text_embeds) and says clearly that it cannot embed images', async () => {
    const clip = await loadAltCLIP(folder, { parts: 'text', graphCacheDir, threads: 1 });
    try {
      assertClose(await embedTexts(clip, batch3.texts), g.get('batch3/outputs/text_embeds'), 1e-5, 'parts text/text_embeds');
      await assert.rejects(embedImages(clip, path.join(FIXTURES, batch3.images[0]!)), /loaded with parts: "text".*cannot embed images/);
    } finally {
      await clip.model.dispose();
    }
  });

  it('parts: "vision" embeds images (= image_embeds), not texts', async () => {
    const clip = await loadAltCLIP(folder, { parts: 'vision', graphCacheDir, threads: 1 });
    try {
      assertClose(await embedImages(clip, batch3.images.map((p) => path.join(FIXTURES, p))), g.get('batch3/outputs/image_embeds'), 1e-5, 'parts vision/image_embeds');
      await assert.rejects(embedTexts(clip, ['a']), /loaded with parts: "vision".*cannot embed texts/);
      await assert.rejects(loadAltCLIP(folder, { parts: 'audio' as 'text' }), /parts must be "text", "vision" or "both"/);
    } finally {
      await clip.model.dispose();
    }
  });

  it('an empty name or a file is a clear error, not a hub lookup', async () => {
    await assert.rejects(loadAltCLIP(''), /no model given/);
    await assert.rejects(loadAltCLIP(path.join(folder, 'config.json')), /config\.json is a file, not a model folder/);
  });

  it('real model: no images give [] and no texts give [0, projection_dim]', async () => {
    const clip = await loadAltCLIP(folder, { graphCacheDir, threads: 1 });
    try {
      assert.deepEqual(await zeroShotImageClassification(clip, [], ['a cat', 'a dog']), []);
      assert.deepEqual((await embedTexts(clip, [])).dims, [0, 24]);
    } finally {
      await clip.model.dispose();
    }
  });
});
