// dtype "q8": int8 encoder Linear weights. Checks the quantizer's arithmetic, and that q8 embeddings
// stay close to fp32 ones (cosine) with the same zero-shot ranking, on every fixture input.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';

import { AltCLIPModel } from '../src/models/altclip.js';
import { quantizeLinear } from '../src/models/quantize.js';
import { openSafetensors, readTensorBytes } from '../src/weights/index.js';
import { writeSafetensors } from '../src/weights/safetensors_writer.js';
import { FIXTURES, Goldens } from './helpers/goldens.js';

const graphCacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-q8-'));
after(() => fs.rmSync(graphCacheDir, { recursive: true, force: true }));

function cosines(a: Float32Array, b: Float32Array, dim: number): number[] {
  const out = [];
  for (let r = 0; r < a.length / dim; r++) {
    let ab = 0, aa = 0, bb = 0;
    for (let i = r * dim; i < (r + 1) * dim; i++) { ab += a[i]! * b[i]!; aa += a[i]! ** 2; bb += b[i]! ** 2; }
    out.push(ab / Math.sqrt(aa * bb));
  }
  return out;
}

describe('q8', () => {
  it('quantizeLinear: symmetric 7-bit per output channel, transposed to [in, out]', () => {
    const w = Float32Array.from([1, -0.5, 0.25, /* row 1 */ 0, 0, 0, /* row 2 */ -2, 1, 0.01]);
    const { q, scale } = quantizeLinear(w, 3, 3);
    assert.deepEqual([...scale], [1 / 63, 1, 2 / 63].map(Math.fround));
    // q[i * out + o] = round(w[o, i] / scale[o]), halves away from zero
    assert.deepEqual([...q], [63, 0, -63, -32, 0, 32, 16, 0, 0]);
  });

  it('quantizeLinear: the same numbers as the plain formula on random rows, ties included', () => {
    let seed = 11;
    const rand = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31; };
    const out = 37, inFeatures = 53;
    const w = Float32Array.from({ length: out * inFeatures }, (_, k) => {
      const row = Math.floor(k / inFeatures);
      if (k % inFeatures === 0) return row % 2 ? -63 / 64 : 63 / 64; // scale 1/64 in every row: exact
      if (k % 7 === 0) return (Math.floor(rand() * 120) - 60 + 0.5) / 64; // w / scale is exactly k + 0.5
      return (rand() - 0.5) * 1.9;
    });
    const { q, scale } = quantizeLinear(w, out, inFeatures);
    let ties = 0;
    for (let o = 0; o < out; o++) {
      let max = 0;
      for (let i = 0; i < inFeatures; i++) max = Math.max(max, Math.abs(w[o * inFeatures + i]!));
      assert.equal(scale[o], Math.fround(max / 63));
      for (let i = 0; i < inFeatures; i++) {
        const x = w[o * inFeatures + i]! / (max / 63);
        if (Math.abs(x % 1) === 0.5) ties++;
        assert.equal(q[i * out + o], Math.sign(x) * Math.round(Math.abs(x)) || 0, `w[${o}, ${i}] = ${w[o * inFeatures + i]}`);
      }
    }
    assert.ok(ties > 100, `${ties} ties`);
  });

  it('the graph decides what is quantized: its int8 requests are exactly the cached q8 tensors', async () => {
    const ckpt = path.join(FIXTURES, 'models', 'tiny-altclip');
    const cache = path.join(graphCacheDir, 'policy');
    await (await AltCLIPModel.fromPretrained(ckpt, { graphCacheDir: cache, dtype: 'q8' })).dispose();
    const stored = fs.readdirSync(path.join(cache, 'q8')).filter((f) => f.endsWith('.safetensors'))
      .flatMap((f) => [...openSafetensors(path.join(cache, 'q8', f)).keys()]).filter((n) => n.endsWith('.q8')).map((n) => n.slice(0, -3)).sort();
    const weights = [...openSafetensors(path.join(ckpt, 'model.safetensors')).keys()];
    // modeling_altclip.ts: every Linear of the vision encoder layers, the MLP of the text encoder layers
    const expected = weights.filter((n) => /^vision_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])\.weight$/.test(n)
      || /^text_model\.roberta\.encoder\.layer\.\d+\.(intermediate|output)\.dense\.weight$/.test(n)).sort();
    assert.ok(expected.length >= 12);
    assert.deepEqual(stored, expected);
  });

  it('q8: a missing Linear weight is reported with every other problem, not as a bare missing tensor', async () => {
    const dir = path.join(graphCacheDir, 'missing-linear');
    fs.mkdirSync(dir, { recursive: true });
    const ckpt = path.join(FIXTURES, 'models', 'tiny-altclip');
    fs.copyFileSync(path.join(ckpt, 'config.json'), path.join(dir, 'config.json'));
    const drop = new Set(['vision_model.encoder.layers.0.mlp.fc1.weight', 'text_model.roberta.encoder.layer.1.intermediate.dense.weight', 'text_model.pre_LN.bias']);
    const refs = [...openSafetensors(path.join(ckpt, 'model.safetensors')).values()].filter((r) => !drop.has(r.name));
    writeSafetensors(path.join(dir, 'model.safetensors'), refs, (i) => readTensorBytes(refs[i]!));
    await assert.rejects(AltCLIPModel.fromPretrained(dir, { graphCacheDir, dtype: 'q8' }), (e: Error) => {
      const first = e.message.split('\n')[0]!;
      assert.match(first, /the weights do not match the config \(3 problems\)/);
      for (const name of drop) assert.ok(first.includes(`missing weight ${name} (expected shape [`), first);
      return true;
    });
  });

  for (const name of ['tiny-altclip', 'tiny-altclip-b']) {
    it(`${name}: q8 embeddings vs fp32 (cosine >= 0.999, same ranking)`, async () => {
      const ckpt = path.join(FIXTURES, 'models', name);
      const index = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'goldens', `${name}.json`), 'utf8'));
      const g = new Goldens(path.join(FIXTURES, 'goldens', `${name}.safetensors`));
      const pixels = new Goldens(path.join(FIXTURES, 'image_processor', 'pixel_values.safetensors'));
      const fp32 = await AltCLIPModel.fromPretrained(ckpt, { graphCacheDir });
      const q8 = await AltCLIPModel.fromPretrained(ckpt, { graphCacheDir, dtype: 'q8' });
      try {
        let worst = 1;
        let compared = 0;
        let nearTies = 0;
        for (const combo of index.combos) {
          const inputs = {
            inputIds: g.get(`${combo.name}/inputs/input_ids`),
            attentionMask: g.get(`${combo.name}/inputs/attention_mask`),
            pixelValues: pixels.concat(combo.model_call.pixel_values.concatenate_along_dim0),
          };
          const a = await fp32.forward(inputs);
          const b = await q8.forward(inputs);
          const dim = a.textEmbeds.dims[1]!;
          for (const c of [...cosines(a.textEmbeds.data as Float32Array, b.textEmbeds.data as Float32Array, dim),
            ...cosines(a.imageEmbeds.data as Float32Array, b.imageEmbeds.data as Float32Array, dim)]) {
            worst = Math.min(worst, c);
          }
          // zero-shot ranking: the best text for each image is the same, unless fp32 itself has a
          // near-tie (top-2 logits closer than 0.1, i.e. < 0.01 in cosine at these logit scales)
          const [nImg, nTxt] = a.logitsPerImage.dims as [number, number];
          for (let i = 0; i < nImg; i++) {
            const row = (t: typeof a) => [...(t.logitsPerImage.data as Float32Array).slice(i * nTxt, (i + 1) * nTxt)];
            const argmax = (r: number[]) => r.indexOf(Math.max(...r));
            const sorted = row(a).sort((x, y) => y - x);
            if (nTxt > 1 && sorted[0]! - sorted[1]! < 0.1) { nearTies++; continue; }
            compared++;
            assert.equal(argmax(row(b)), argmax(row(a)), `${combo.name}: image ${i} ranks texts differently in q8`);
          }
        }
        console.log(`${name}: worst q8-vs-fp32 embedding cosine ${worst.toFixed(5)}; top-1 agrees on ${compared} images (${nearTies} fp32 near-ties not compared)`);
        assert.ok(compared >= 5);
        assert.ok(worst >= 0.999, `worst cosine ${worst}`);
      } finally {
        await Promise.all([fp32.dispose(), q8.dispose()]);
      }
    });
  }
});
