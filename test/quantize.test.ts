// dtype "q8": int8 encoder Linear weights. Checks the quantizer's arithmetic, the named schemes (one
// default on every CPU, opt-ins by name only), and that q8 embeddings stay close to fp32 ones (cosine)
// with the same zero-shot ranking, on every fixture input. Batch invariance: q8-invariance.test.ts.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';

import { AltCLIPModel } from '../src/models/altclip.js';
import { DEFAULT_Q8_SCHEME, Q8_SCHEMES, cpuHasVnni, hasVnniFlag, q8Scheme, q8SchemeName, quantizeLinear } from '../src/models/quantize.js';
import { Tensor } from '../src/tensor.js';
import { openSafetensors, readTensorBytes } from '../src/weights/index.js';
import { writeSafetensors } from '../src/weights/safetensors_writer.js';
import { FIXTURES, Goldens } from './helpers/goldens.js';

const graphCacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-q8-'));
after(() => fs.rmSync(graphCacheDir, { recursive: true, force: true }));

/** Runs `fn` with ALTCLIP_Q8_SCHEME set to `scheme` (read when a q8 model is made), restoring it after. */
async function withScheme<T>(scheme: string, fn: () => Promise<T>): Promise<T> {
  const before = process.env.ALTCLIP_Q8_SCHEME;
  process.env.ALTCLIP_Q8_SCHEME = scheme;
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env.ALTCLIP_Q8_SCHEME;
    else process.env.ALTCLIP_Q8_SCHEME = before;
  }
}

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

  it('quantizeLinear: 8-bit weights use |q| <= 127', () => {
    const w = Float32Array.from([1, -0.5, 0.25, /* row 1 */ 0, 0, 0, /* row 2 */ -2, 1, 0.01]);
    const { q, scale } = quantizeLinear(w, 3, 3, 8);
    assert.deepEqual([...scale], [1 / 127, 1, 2 / 127].map(Math.fround));
    // 0.5 * 127 = 63.5 and 0.25 * 127 = 31.75; 0.01 / (2 / 127) = 0.635
    assert.deepEqual([...q], [127, 0, -127, -64, 0, 64, 32, 0, 1]);
  });

  it('one named scheme: the default on every CPU, another only by name (ALTCLIP_Q8_SCHEME); VNNI detection is only reported', () => {
    const zen4 = 'processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu avx2 avx512f avx512_vnni\n';
    const avx2 = 'processor\t: 0\nflags\t\t: fpu avx2 fma\n';
    assert.equal(hasVnniFlag(zen4), true);
    assert.equal(hasVnniFlag('flags\t\t: fpu avx2 avx_vnni\n'), true);
    assert.equal(hasVnniFlag(avx2), false);
    assert.equal(hasVnniFlag(zen4 + '\n' + avx2), false);
    assert.equal(hasVnniFlag('flags\t\t: avx512_vnnix\n'), false);
    // the default names what it computes, and does not depend on the CPU (no cpuinfo is consulted)
    const d = q8Scheme({});
    assert.equal(d.name, DEFAULT_Q8_SCHEME);
    assert.equal(q8SchemeName({}), DEFAULT_Q8_SCHEME);
    assert.deepEqual({ ...d }, { name: 'altclip-q8-w8a7-row-v1', weightBits: 8, activations: 'row', activationBits: 7, textAttention: false, batchInvariant: true, portable: true });
    // no int16 pair-sum saturation anywhere: 2 * max|a| * max|b| <= 32767 for the portable schemes
    for (const s of Object.values(Q8_SCHEMES)) {
      const a = s.activations === 'row' ? 2 ** s.activationBits - 1 : 255;
      const b = s.weightBits === 8 ? 127 : 63;
      assert.equal(2 * a * b <= 32767, s.portable, s.name);
    }
    assert.equal(q8Scheme({ ALTCLIP_Q8_SCHEME: 'ort-dynamic-w8-vnni' }).activations, 'tensor');
    assert.equal(q8Scheme({ ALTCLIP_Q8_SCHEME: '' }).name, DEFAULT_Q8_SCHEME);
    for (const bad of ['w8', 'toString', '__proto__', 'ALTCLIP-Q8-W8A7-ROW-V1']) {
      assert.throws(() => q8Scheme({ ALTCLIP_Q8_SCHEME: bad }), /ALTCLIP_Q8_SCHEME: unknown q8 scheme .* \(known: altclip-q8-w8a7-row-v1, /);
    }
  });

  it('two schemes (8- and 7-bit weights) are cached apart (file name, id, graph) and never reused across the two', async () => {
    const ckpt = path.join(FIXTURES, 'models', 'tiny-altclip');
    const cache = path.join(graphCacheDir, 'bits');
    const graphsOf = () => new Set(fs.readdirSync(path.join(cache, 'graphs')));
    const q8Files = () => fs.readdirSync(path.join(cache, 'q8')).filter((f) => f.endsWith('.safetensors')).sort();
    await withScheme('ort-dynamic-w7', async () => (await AltCLIPModel.fromPretrained(ckpt, { graphCacheDir: cache, dtype: 'q8' })).dispose());
    const w7 = q8Files(); // one file per tower (each tower's graph asks for its own weights)
    assert.ok(w7.length >= 1 && w7.every((f) => /^[0-9a-f]{24}-w7\.safetensors$/.test(f)), w7.join(', '));
    const graphs7 = graphsOf();
    await withScheme(DEFAULT_Q8_SCHEME, async () => (await AltCLIPModel.fromPretrained(ckpt, { graphCacheDir: cache, dtype: 'q8' })).dispose());
    const files = q8Files();
    const w8 = files.filter((f) => !w7.includes(f));
    assert.equal(w8.length, w7.length, files.join(', '));
    assert.ok(w8.every((f) => /^[0-9a-f]{24}-w8\.safetensors$/.test(f)), w8.join(', '));
    const ids7 = new Set(w7.map((f) => f.slice(0, 24)));
    assert.ok(w8.every((f) => !ids7.has(f.slice(0, 24)))); // the id differs too, not only the suffix
    // the graphs reference their q8 file, so each choice gets its own graph folders (and prepacked copies)
    const graphs8 = [...graphsOf()].filter((d) => !graphs7.has(d));
    assert.ok(graphs8.length >= 2 && graphs8.every((d) => d.includes(`-${DEFAULT_Q8_SCHEME}-`)), graphs8.join(', '));
    // the bytes: |q| reaches 63 (7-bit) or 127 (8-bit) in every matrix, never more
    for (const [group, qmax] of [[w7, 63], [w8, 127]] as const) {
      for (const file of group) {
        const refs = openSafetensors(path.join(cache, 'q8', file));
        for (const ref of refs.values()) {
          if (!ref.name.endsWith('.q8')) continue;
          const q = new Int8Array(readTensorBytes(ref).slice().buffer);
          const max = q.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
          assert.equal(max, qmax, `${file}: ${ref.name}`);
        }
      }
    }
    // loading again with either choice reuses its own file: still two
    await withScheme('ort-dynamic-w7', async () => (await AltCLIPModel.fromPretrained(ckpt, { graphCacheDir: cache, dtype: 'q8' })).dispose());
    assert.deepEqual(q8Files(), files);
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

  it('a q8 model keeps the scheme it was made with: changing ALTCLIP_Q8_SCHEME later builds no other graph', async () => {
    const ckpt = path.join(FIXTURES, 'models', 'tiny-altclip');
    const cache = path.join(graphCacheDir, 'scheme-fixed');
    const graphs = () => fs.readdirSync(path.join(cache, 'graphs')).sort();
    for (const [made, later] of [['ort-dynamic-w7', DEFAULT_Q8_SCHEME], [DEFAULT_Q8_SCHEME, 'ort-dynamic-w7']] as const) {
      const model = await withScheme(made, () => AltCLIPModel.fromPretrained(ckpt, { graphCacheDir: cache, dtype: 'q8' }));
      const built = graphs();
      assert.ok(built.some((g) => g.startsWith(`text-${made}`)) && built.some((g) => g.startsWith(`vision-${made}`)), built.join(', '));
      await withScheme(later, async () => {
        await model.getTextFeatures({ inputIds: new Tensor('int64', new BigInt64Array([0n, 100n, 2n]), [1, 3]) });
        await model.getImageFeatures({ pixelValues: new Tensor('float32', new Float32Array(3 * 224 * 224).fill(0.1), [1, 3, 224, 224]) });
      });
      await model.dispose();
      assert.deepEqual(graphs(), built, `made with ${made}, run while ALTCLIP_Q8_SCHEME=${later}`);
    }
  });

  it('the graph decides what is quantized: its int8 requests are exactly the cached q8 tensors (each scheme)', async () => {
    const ckpt = path.join(FIXTURES, 'models', 'tiny-altclip');
    const weights = [...openSafetensors(path.join(ckpt, 'model.safetensors')).keys()];
    const saved = process.env.ALTCLIP_Q8_SCHEME;
    try {
      for (const scheme of Object.keys(Q8_SCHEMES)) {
        process.env.ALTCLIP_Q8_SCHEME = scheme;
        const bits = String(Q8_SCHEMES[scheme]!.weightBits);
        const textAttention = Q8_SCHEMES[scheme]!.textAttention;
        const cache = path.join(graphCacheDir, `policy-${scheme}`);
        await (await AltCLIPModel.fromPretrained(ckpt, { graphCacheDir: cache, dtype: 'q8' })).dispose();
        const files = fs.readdirSync(path.join(cache, 'q8')).filter((f) => f.endsWith('.safetensors'));
        assert.ok(files.length > 0 && files.every((f) => f.endsWith(`-w${bits}.safetensors`)), files.join(', '));
        const stored = files.flatMap((f) => [...openSafetensors(path.join(cache, 'q8', f)).keys()])
          .filter((n) => n.endsWith('.q8')).map((n) => n.slice(0, -3)).sort();
        // modeling_altclip.ts: every Linear of the vision encoder layers, the MLP of the text encoder layers, and
        // where the scheme says so, the text encoder layers' attention projections too
        const expected = weights.filter((n) => /^vision_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])\.weight$/.test(n)
          || /^text_model\.roberta\.encoder\.layer\.\d+\.(intermediate|output)\.dense\.weight$/.test(n)
          || (textAttention && /^text_model\.roberta\.encoder\.layer\.\d+\.attention\.(self\.(query|key|value)|output\.dense)\.weight$/.test(n))).sort();
        assert.ok(expected.length >= (textAttention ? 20 : 12), `${expected.length} weights`);
        assert.deepEqual(stored, expected, scheme);
      }
    } finally {
      if (saved === undefined) delete process.env.ALTCLIP_Q8_SCHEME;
      else process.env.ALTCLIP_Q8_SCHEME = saved;
    }
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

  // every scheme, on this CPU (the per-tensor 8-bit opt-in only where it is exact: a CPU with VNNI)
  for (const name of ['tiny-altclip', 'tiny-altclip-b']) for (const scheme of Object.keys(Q8_SCHEMES)) {
    it(`${name}: q8 (${scheme}) embeddings vs fp32 (cosine >= 0.999, same ranking)`, async (t) => {
      if (!Q8_SCHEMES[scheme]!.portable && !cpuHasVnni()) {
        t.diagnostic(`${scheme} needs VNNI, which this CPU lacks: checked it is not the default instead`);
        assert.notEqual(q8Scheme({}).name, scheme);
        return;
      }
      const ckpt = path.join(FIXTURES, 'models', name);
      const index = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'goldens', `${name}.json`), 'utf8'));
      const g = new Goldens(path.join(FIXTURES, 'goldens', `${name}.safetensors`));
      const pixels = new Goldens(path.join(FIXTURES, 'image_processor', 'pixel_values.safetensors'));
      const fp32 = await AltCLIPModel.fromPretrained(ckpt, { graphCacheDir });
      const q8 = await withScheme(scheme, () => AltCLIPModel.fromPretrained(ckpt, { graphCacheDir, dtype: 'q8' }));
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
        console.log(`${name} (${scheme}): worst q8-vs-fp32 embedding cosine ${worst.toFixed(5)}; top-1 agrees on ${compared} images (${nearTies} fp32 near-ties not compared)`);
        assert.ok(compared >= 5);
        assert.ok(worst >= 0.999, `worst cosine ${worst}`);
      } finally {
        await Promise.all([fp32.dispose(), q8.dispose()]);
      }
    });
  }
});
