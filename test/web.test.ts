// altclip/web in a real browser: Debian's chromium driven by playwright-core, the bundle built by
// scripts/build-web.mjs, files served from 127.0.0.1 with COOP/COEP (cross-origin isolated: WASM
// threads). The page loads the fixture checkpoints by HTTP Range and its outputs are compared with
// the goldens of the Python reference (test/fixtures/goldens/tiny-altclip.*: transformers 4.40.2,
// see tiny-altclip.json for how they were made), and its tokenizer with the Node tokenizer.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

import { AltCLIPModel } from '../src/models/altclip.js';
import { convertToQ8 } from '../src/models/quantize.js';
import { XLMRobertaTokenizer } from '../src/tokenizer/index.js';
import { Tensor } from '../src/tensor.js';
import { buildWeb } from '../scripts/build-web.mjs';
import { assertClose, FIXTURES, Goldens, printDiffTable } from './helpers/goldens.js';
import { startStaticServer, type StaticServer } from './web_server.js';
import { requireProgram } from './helpers/system.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TOL = 1e-4; // the bar (as test/model.test.ts)
const TINY = '/test/fixtures/models/tiny-altclip/';
const TINY_BIN = '/test/fixtures/models/tiny-altclip-bin/';

interface Combo {
  name: string;
  texts: string[];
  images: string[];
  processor_call: { padding: boolean | 'max_length'; max_length?: number };
  model_call: { pixel_values: { concatenate_along_dim0: string[] } };
}

const index = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'goldens', 'tiny-altclip.json'), 'utf8'));
const combos = index.combos as Combo[];
const g = new Goldens(path.join(FIXTURES, 'goldens', 'tiny-altclip.safetensors'));
const pixels = new Goldens(path.join(FIXTURES, 'image_processor', 'pixel_values.safetensors'));

/** A tensor as page.evaluate can carry it. */
const wire = (t: Tensor) => ({ type: t.type, dims: [...t.dims], data: Array.from(t.data as Float32Array, Number) });
const fromWire = (w: { dims: number[]; data: number[] }) => new Tensor('float32', Float32Array.from(w.data), w.dims);

let server: StaticServer;
let browser: Browser;
let context: BrowserContext;
let page: Page;

async function openPage(): Promise<Page> {
  const p = await context.newPage();
  await p.addInitScript('window.__name = (f) => f'); // tsx's keepNames helper, used by the evaluated functions
  p.on('pageerror', (e) => console.log(`[page error] ${e.message}`));
  await p.goto(`${server.url}/test/web_harness.html`);
  await p.waitForFunction(() => (window as unknown as { altclipReady?: boolean }).altclipReady === true, null, { timeout: 30_000 });
  return p;
}

/** The bundle under test, built by this test (dist/web is left alone), served as /dist/web/. */
const WEB_OUT = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-web-build-'));
/** tiny-altclip converted to a q8 checkpoint (altclip convert), served as /q8ckpt/. */
const Q8_CKPT = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-web-q8ckpt-'));

before(async () => {
  const executablePath = requireProgram('chromium'); // a missing browser fails here, before the setup
  await buildWeb({ outDir: WEB_OUT });
  await convertToQ8(path.join(FIXTURES, 'models', 'tiny-altclip'), Q8_CKPT);
  server = await startStaticServer(ROOT, { '/dist/web/': WEB_OUT, '/q8ckpt/': Q8_CKPT });
  browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
  context = await browser.newContext();
  page = await openPage();
});

after(async () => {
  printDiffTable('browser: max abs difference vs the reference, per tensor family:');
  await browser?.close();
  await server?.close();
  fs.rmSync(WEB_OUT, { recursive: true, force: true });
  fs.rmSync(Q8_CKPT, { recursive: true, force: true });
});

// the timeout only guards against a hang: on the 2-core machine shared with 7 other busy helpers the suite took ~5 min
describe('altclip/web in Chromium', { timeout: 900_000 }, () => {
  it('the bundle imports nothing from Node and ships onnxruntime-web beside it', () => {
    const js = fs.readFileSync(path.join(WEB_OUT, 'altclip.js'), 'utf8');
    assert.doesNotMatch(js, /\bfrom\s*["'](node:|fs|path|os|crypto|worker_threads|sharp|onnxruntime-node)["']/);
    assert.doesNotMatch(js, /\brequire\(["'](node:|fs|path|sharp|onnxruntime-node)/);
    for (const f of ['altclip.webgpu.js', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm', 'ort-wasm-simd-threaded.jsep.mjs', 'ort-wasm-simd-threaded.jsep.wasm']) assert.ok(fs.existsSync(path.join(WEB_OUT, f)), f);
  });

  it('the page is cross-origin isolated (WASM threads possible) and has WASM SIMD', async () => {
    const r = await page.evaluate(() => ({ isolated: crossOriginIsolated, simd: WebAssembly.validate(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11])) }));
    assert.deepEqual(r, { isolated: true, simd: true });
  });

  it('tokenizer: the page gives the ids of the goldens and of the Node tokenizer', async () => {
    const node = await XLMRobertaTokenizer.fromPretrained(path.join(FIXTURES, 'models', 'tiny-altclip'));
    const extra = ['', ' ', 'Hello   world', 'naïve café ﬁ', '東京タワー 🗼', '<s> <mask> </s>', 'x'.repeat(300)];
    const calls = [...combos.map((c) => ({ texts: c.texts, padding: c.processor_call.padding, maxLength: c.processor_call.max_length })),
      { texts: extra, padding: true as const, maxLength: undefined }];
    const pageIds = await page.evaluate(async ({ base, calls }) => {
      const { AltCLIPProcessor } = (window as any).altclip;
      const proc = await AltCLIPProcessor.fromPretrained(base);
      return calls.map((c) => proc.tokenizer.batchEncode(c.texts, { padding: c.padding, maxLength: c.maxLength, truncation: c.maxLength !== undefined }).inputIds);
    }, { base: TINY, calls });
    calls.forEach((c, i) => {
      const expected = node.batchEncode(c.texts, { padding: c.padding, maxLength: c.maxLength, truncation: c.maxLength !== undefined }).inputIds;
      assert.deepEqual(pageIds[i], expected, `texts ${JSON.stringify(c.texts).slice(0, 80)}`);
      if (i < combos.length) {
        const golden = g.get(`${combos[i]!.name}/inputs/input_ids`);
        const width = golden.dims[1]!;
        assert.deepEqual(pageIds[i], pageIds[i]!.map((_, r) => Array.from(golden.data as BigInt64Array, Number).slice(r * width, (r + 1) * width)));
      }
    });
  });

  it('images: PNGs decoded by the page give Pillow\'s pixel values exactly; JPEG differences measured', async () => {
    const names = [...new Set(combos.flatMap((c) => c.images))];
    const out = await page.evaluate(async ({ base, names }) => {
      const { AltCLIPProcessor } = (window as any).altclip;
      const proc = await AltCLIPProcessor.fromPretrained(base);
      const result: Record<string, { dims: number[]; data: number[] }> = {};
      for (const n of names) {
        const { pixelValues } = await proc.imageProcessor.preprocess(`/test/fixtures/${n}`);
        result[n] = { dims: [...pixelValues.dims], data: Array.from(pixelValues.data) };
      }
      return result;
    }, { base: TINY, names });
    const report: string[] = [];
    for (const n of names) {
      const key = `pixel_values/${path.basename(n, path.extname(n))}`;
      const actual = fromWire(out[n]!);
      const expected = pixels.get(key);
      if (n.endsWith('.png')) {
        assertClose(actual, expected, 0, `${n} (page-decoded PNG)`);
      } else {
        // JPEG: Chromium's decoder vs libjpeg-turbo (Pillow's goldens); in uint8 steps of the normalised range
        const a = actual.data as Float32Array;
        const b = expected.data as Float32Array;
        let max = 0;
        for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
        report.push(`${n}: max |pixel value diff| ${max.toFixed(4)} (~${Math.round(max * 0.27 * 255)} uint8 levels)`);
        assert.ok(max < 0.5, `${n}: page-decoded JPEG far from Pillow's (${max})`);
      }
    }
    console.log(`browser-decoded JPEG vs Pillow (libjpeg-turbo) after preprocessing:\n  ${report.join('\n  ')}`);
  });

  it('fp32: getImageFeatures / getTextFeatures / forward logits match the goldens (safetensors by Range)', async () => {
    const first = server.requests.length;
    const inputs = combos.map((c) => ({
      name: c.name,
      pixelValues: wire(pixels.concat(c.model_call.pixel_values.concatenate_along_dim0)),
      inputIds: wire(new Tensor('float32', Float32Array.from(g.get(`${c.name}/inputs/input_ids`).data as BigInt64Array, Number), g.get(`${c.name}/inputs/input_ids`).dims)),
      attentionMask: wire(new Tensor('float32', Float32Array.from(g.get(`${c.name}/inputs/attention_mask`).data as BigInt64Array, Number), g.get(`${c.name}/inputs/attention_mask`).dims)),
    }));
    const out = await page.evaluate(async ({ base, inputs }) => {
      const { AltCLIPModel, Tensor } = (window as any).altclip;
      const model = await AltCLIPModel.fromPretrained(base, { cache: false });
      const t = (w: { dims: number[]; data: number[] }, type = 'float32') => (type === 'int64'
        ? new Tensor('int64', BigInt64Array.from(w.data, (v) => BigInt(v)), w.dims) : new Tensor('float32', Float32Array.from(w.data), w.dims));
      const plain = (x: any) => ({ dims: [...x.dims], data: Array.from(x.data as Float32Array) });
      const results = [];
      for (const c of inputs) {
        const pixelValues = t(c.pixelValues);
        const inputIds = t(c.inputIds, 'int64');
        const attentionMask = t(c.attentionMask, 'int64');
        const fwd = await model.forward({ inputIds, attentionMask, pixelValues });
        results.push({
          image: plain(await model.getImageFeatures({ pixelValues })),
          text: plain(await model.getTextFeatures({ inputIds, attentionMask })),
          logitsPerImage: plain(fwd.logitsPerImage),
          logitsPerText: plain(fwd.logitsPerText),
        });
      }
      await model.dispose();
      return { results, threads: (window as any).altclip.env.wasm.numThreads };
    }, { base: TINY, inputs });
    assert.ok(out.threads >= 2, `onnxruntime-web runs ${out.threads} thread(s) in a cross-origin isolated page`);
    combos.forEach((c, i) => {
      assertClose(fromWire(out.results[i]!.image), g.get(`${c.name}/get_image_features`), TOL, `web/${c.name}/get_image_features`);
      assertClose(fromWire(out.results[i]!.text), g.get(`${c.name}/get_text_features`), TOL, `web/${c.name}/get_text_features`);
      assertClose(fromWire(out.results[i]!.logitsPerImage), g.get(`${c.name}/outputs/logits_per_image`), TOL, `web/${c.name}/outputs/logits_per_image`);
      assertClose(fromWire(out.results[i]!.logitsPerText), g.get(`${c.name}/outputs/logits_per_text`), TOL, `web/${c.name}/outputs/logits_per_text`);
    });
    const weights = server.requests.slice(first).filter((r) => r.path.endsWith('model.safetensors'));
    assert.ok(weights.length >= 2 && weights.every((r) => r.range !== null && r.status === 206), 'the weights are read by Range requests only');
  });

  it('end to end in the page: processor on PNG files + forward match the goldens (nonsquare)', async () => {
    const c = combos.find((x) => x.name === 'nonsquare')!;
    const out = await page.evaluate(async ({ base, texts, images }) => {
      const { AltCLIPModel, AltCLIPProcessor } = (window as any).altclip;
      const [model, proc] = await Promise.all([AltCLIPModel.fromPretrained(base, { cache: false }), AltCLIPProcessor.fromPretrained(base)]);
      const blobs = await Promise.all(images.map(async (u: string) => (await fetch(u)).blob()));
      const inputs = await proc.process({ text: texts, images: blobs, padding: true });
      const fwd = await model.forward(inputs);
      await model.dispose();
      return { dims: [...fwd.logitsPerImage.dims], data: Array.from(fwd.logitsPerImage.data as Float32Array) };
    }, { base: TINY, texts: c.texts, images: c.images.map((n) => `/test/fixtures/${n}`) });
    assertClose(fromWire(out), g.get(`${c.name}/outputs/logits_per_image`), TOL, `web-e2e/${c.name}/outputs/logits_per_image`);
  });

  it('pytorch_model.bin: the zip directory and pickle are read by Range requests; features match the goldens', async () => {
    const first = server.requests.length;
    const c = combos[1]!; // batch3
    const ids = g.get(`${c.name}/inputs/input_ids`);
    const mask = g.get(`${c.name}/inputs/attention_mask`);
    const out = await page.evaluate(async ({ base, px, ids, mask }) => {
      const { AltCLIPModel, Tensor } = (window as any).altclip;
      const model = await AltCLIPModel.fromPretrained(base, { cache: false });
      const image = await model.getImageFeatures({ pixelValues: new Tensor('float32', Float32Array.from(px.data), px.dims) });
      const text = await model.getTextFeatures({
        inputIds: new Tensor('int64', BigInt64Array.from(ids.data, (v: number) => BigInt(v)), ids.dims),
        attentionMask: new Tensor('int64', BigInt64Array.from(mask.data, (v: number) => BigInt(v)), mask.dims),
      });
      await model.dispose();
      return { image: { dims: [...image.dims], data: Array.from(image.data as Float32Array) }, text: { dims: [...text.dims], data: Array.from(text.data as Float32Array) } };
    }, { base: TINY_BIN, px: wire(pixels.concat(c.model_call.pixel_values.concatenate_along_dim0)), ids: wire(ids), mask: wire(mask) });
    assertClose(fromWire(out.image), g.get(`${c.name}/get_image_features`), TOL, `web-bin/${c.name}/get_image_features`);
    assertClose(fromWire(out.text), g.get(`${c.name}/get_text_features`), TOL, `web-bin/${c.name}/get_text_features`);
    const bin = server.requests.slice(first).filter((r) => r.path.endsWith('pytorch_model.bin'));
    assert.ok(bin.length >= 2, `${bin.length} requests`);
    assert.ok(bin.every((r) => r.range !== null && r.status === 206), 'only Range requests');
    const size = fs.statSync(path.join(FIXTURES, 'models', 'tiny-altclip-bin', 'pytorch_model.bin')).size;
    const fetched = bin.reduce((n, r) => n + r.bytes, 0);
    console.log(`pytorch_model.bin: ${bin.length} Range requests, ${fetched} bytes fetched of ${size}`);
  });

  it('q8: same features as the Node package\'s q8; progress callbacks; a second load comes from the cache (no request)', async () => {
    const c = combos[1]!; // batch3
    const ids = g.get(`${c.name}/inputs/input_ids`);
    const mask = g.get(`${c.name}/inputs/attention_mask`);
    const px = pixels.concat(c.model_call.pixel_values.concatenate_along_dim0);
    const graphCacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-web-q8-'));
    // One q8 scheme everywhere (models/quantize.ts' default; the page has no other): the Node package's
    // default is the reference as it is, with no variable set
    const schemeBefore = process.env.ALTCLIP_Q8_SCHEME;
    delete process.env.ALTCLIP_Q8_SCHEME;
    let node: AltCLIPModel;
    try {
      node = await AltCLIPModel.fromPretrained(path.join(FIXTURES, 'models', 'tiny-altclip'), { dtype: 'q8', graphCacheDir, threads: 1 });
    } finally {
      if (schemeBefore !== undefined) process.env.ALTCLIP_Q8_SCHEME = schemeBefore;
    }
    const nodeImage = await node.getImageFeatures({ pixelValues: px });
    const nodeText = await node.getTextFeatures({ inputIds: ids, attentionMask: mask });
    await node.dispose();
    fs.rmSync(graphCacheDir, { recursive: true, force: true });

    const run = (p: Page) => p.evaluate(async ({ base, px, ids, mask }) => {
      const { AltCLIPModel, Tensor } = (window as any).altclip;
      const events: { stage: string; loaded: number; total: number }[] = [];
      const model = await AltCLIPModel.fromPretrained(base, { dtype: 'q8', onProgress: (e: any) => events.push({ stage: e.stage, loaded: e.loaded, total: e.total }) });
      const image = await model.getImageFeatures({ pixelValues: new Tensor('float32', Float32Array.from(px.data), px.dims) });
      const text = await model.getTextFeatures({
        inputIds: new Tensor('int64', BigInt64Array.from(ids.data, (v: number) => BigInt(v)), ids.dims),
        attentionMask: new Tensor('int64', BigInt64Array.from(mask.data, (v: number) => BigInt(v)), mask.dims),
      });
      await model.dispose();
      return { events, image: { dims: [...image.dims], data: Array.from(image.data as Float32Array) }, text: { dims: [...text.dims], data: Array.from(text.data as Float32Array) } };
    }, { base: TINY, px: wire(px), ids: wire(ids), mask: wire(mask) });

    await page.evaluate(() => (window as any).altclip.clearCache());
    const firstRequests = server.requests.length;
    const cold = await run(page);
    const coldWeights = server.requests.slice(firstRequests).filter((r) => r.path.startsWith(TINY)).length;
    assertClose(fromWire(cold.image), nodeImage, TOL, 'web-q8 vs node-q8 image features');
    assertClose(fromWire(cold.text), nodeText, TOL, 'web-q8 vs node-q8 text features');

    const download = cold.events.filter((e) => e.stage === 'download');
    const build = cold.events.filter((e) => e.stage === 'build');
    assert.ok(download.length >= 2);
    download.forEach((e, i) => assert.ok(e.loaded <= e.total && (i === 0 || e.loaded >= download[i - 1]!.loaded)));
    assert.equal(download.at(-1)!.loaded, download.at(-1)!.total);
    assert.deepEqual(build.map((e) => e.loaded), [0, 1, 2]);

    // a new page of the same origin: everything from the Cache API
    const again = await openPage();
    const before = server.requests.length;
    const warm = await run(again);
    const warmRequests = server.requests.slice(before).filter((r) => r.path.startsWith(TINY));
    await again.close();
    assert.deepEqual(warm.image.data, cold.image.data);
    assert.deepEqual(warm.text.data, cold.text.data);
    console.log(`q8 load: ${coldWeights} requests to the model folder cold, ${warmRequests.length} warm`);
    assert.ok(coldWeights > 0);
    assert.deepEqual(warmRequests.map((r) => r.path), []);
  });

  it('q8 checkpoint (altclip convert): the page loads it (int8 tensors only) with the numbers of Node quantizing at load', async () => {
    const c = combos[1]!; // batch3
    const ids = g.get(`${c.name}/inputs/input_ids`);
    const mask = g.get(`${c.name}/inputs/attention_mask`);
    const px = pixels.concat(c.model_call.pixel_values.concatenate_along_dim0);
    const graphCacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-web-q8-'));
    const node = await AltCLIPModel.fromPretrained(path.join(FIXTURES, 'models', 'tiny-altclip'), { dtype: 'q8', graphCacheDir, threads: 1 });
    const nodeImage = await node.getImageFeatures({ pixelValues: px });
    const nodeText = await node.getTextFeatures({ inputIds: ids, attentionMask: mask });
    await node.dispose();
    fs.rmSync(graphCacheDir, { recursive: true, force: true });
    const first = server.requests.length;
    const out = await page.evaluate(async ({ base, px, ids, mask }) => {
      const { AltCLIPModel, Tensor } = (window as any).altclip;
      const model = await AltCLIPModel.fromPretrained(base, { dtype: 'q8', cache: false });
      const image = await model.getImageFeatures({ pixelValues: new Tensor('float32', Float32Array.from(px.data), px.dims) });
      const text = await model.getTextFeatures({
        inputIds: new Tensor('int64', BigInt64Array.from(ids.data, (v: number) => BigInt(v)), ids.dims),
        attentionMask: new Tensor('int64', BigInt64Array.from(mask.data, (v: number) => BigInt(v)), mask.dims),
      });
      await model.dispose();
      return { image: { dims: [...image.dims], data: Array.from(image.data as Float32Array) }, text: { dims: [...text.dims], data: Array.from(text.data as Float32Array) } };
    }, { base: '/q8ckpt/', px: wire(px), ids: wire(ids), mask: wire(mask) });
    assertClose(fromWire(out.image), nodeImage, TOL, 'web q8 checkpoint vs node-q8 image features');
    assertClose(fromWire(out.text), nodeText, TOL, 'web q8 checkpoint vs node-q8 text features');
    const fetched = server.requests.slice(first).filter((r) => r.path.startsWith('/q8ckpt/model.safetensors')).reduce((n, r) => n + r.bytes, 0);
    const size = fs.statSync(path.join(Q8_CKPT, 'model.safetensors')).size;
    console.log(`q8 checkpoint in the page: ${fetched} bytes of model.safetensors fetched by Range, overlaps included (file ${size}; float checkpoint ${fs.statSync(path.join(FIXTURES, 'models', 'tiny-altclip', 'model.safetensors')).size})`);
    assert.ok(fetched > 0);
    // nothing but the converted folder was read (no float checkpoint behind it)
    assert.deepEqual(server.requests.slice(first).filter((r) => r.path.startsWith('/test/fixtures/models/')).map((r) => r.path), []);
  });

  it('examples/web: the demo page classifies a fixture image like the Node package (screenshot saved)', async () => {
    const labels = ['a cat', '一只狗', 'un oiseau'];
    const imageFile = path.join(FIXTURES, 'images', 'cat.jpg');
    const demo = await context.newPage();
    await demo.setViewportSize({ width: 900, height: 760 });
    demo.on('pageerror', (e) => console.log(`[demo error] ${e.message}`));
    await demo.goto(`${server.url}/examples/web/index.html?model=${encodeURIComponent(TINY)}&dtype=fp32&autoload`);
    await demo.waitForFunction(() => /^Loaded /.test(document.getElementById('status')!.textContent ?? ''), null, { timeout: 120_000 });
    await demo.fill('#labels', labels.join('\n'));
    await demo.fill('#template', 'a photo of {}');
    await demo.setInputFiles('#file', imageFile);
    await demo.waitForFunction(() => document.body.dataset.classified === '1', null, { timeout: 60_000 });
    const rows = await demo.$$eval('#results tbody tr', (trs) => trs.map((tr) => ({
      label: tr.querySelector('.label')!.textContent, score: Number((tr as HTMLElement).dataset.score),
    })));
    const shot = path.join(process.env.ALTCLIP_SCREENSHOTS ?? os.tmpdir(), 'altclip-web-demo.png');
    await demo.screenshot({ path: shot, fullPage: true });
    console.log(`demo screenshot: ${shot}`);
    await demo.close();

    const graphCacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-web-demo-'));
    const ckpt = path.join(FIXTURES, 'models', 'tiny-altclip');
    const { AltCLIPProcessor } = await import('../src/processor.js');
    const { zeroShotImageClassification } = await import('../src/tasks/index.js');
    const clip = { model: await AltCLIPModel.fromPretrained(ckpt, { graphCacheDir, threads: 1 }), processor: await AltCLIPProcessor.fromPretrained(ckpt) };
    const expected = await zeroShotImageClassification(clip, imageFile, labels, { hypothesisTemplate: 'a photo of {}' });
    await clip.model.dispose();
    fs.rmSync(graphCacheDir, { recursive: true, force: true });
    assert.deepEqual(rows.map((r) => r.label), expected.map((r) => r.label));
    rows.forEach((r, i) => assert.ok(Math.abs(r.score - expected[i]!.score) <= TOL, `${r.label}: ${r.score} vs Node ${expected[i]!.score}`));
  });
});
