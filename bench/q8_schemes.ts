// q8 schemes side by side on one model (issue 25): cosine vs fp32 over the fixture images and texts,
// batch invariance (each input alone vs in its batch), and an in-process interleaved A/B of speed
// (image batch 8, text batch 32), for a shared machine where only ratios from one run mean anything.
//
//   node --import tsx bench/q8_schemes.ts --model /work/fullsize/altclip-large \
//     [--schemes altclip-q8-w8a7-row-v1,ort-dynamic-w8-vnni] [--rounds 3] [--threads 2] [--speed 0|1]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { AltCLIPModel } from '../src/models/altclip.js';
import { cpuHasVnni, DEFAULT_Q8_SCHEME } from '../src/models/quantize.js';
import { AltCLIPProcessor } from '../src/processor.js';
import { Tensor } from '../src/tensor.js';

function arg(k: string, dflt: string): string {
  const i = process.argv.indexOf(k);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

function rowCosines(a: Tensor, b: Tensor): number[] {
  const [rows, dim] = a.dims as [number, number];
  const x = a.data as Float32Array, y = b.data as Float32Array;
  return Array.from({ length: rows }, (_, r) => {
    let ab = 0, aa = 0, bb = 0;
    for (let i = r * dim; i < (r + 1) * dim; i++) { ab += x[i]! * y[i]!; aa += x[i]! ** 2; bb += y[i]! ** 2; }
    return ab / Math.sqrt(aa * bb);
  });
}
const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

const TEXTS = ['a photo of a cat', '一只猫的照片', 'une tasse de café sur une table', 'ein Porträt in Graustufen',
  'a tall building at night', 'a wide landscape with mountains and a lake under a cloudy sky', 'палитра цветов', 'x',
  '透明な背景のロゴ', 'a small picture', 'two dogs playing in the snow', 'una taza de café'];

async function main() {
  const model = arg('--model', '/work/fullsize/altclip-large');
  const threads = Number(arg('--threads', '2'));
  const schemes = arg('--schemes', `${DEFAULT_Q8_SCHEME},ort-dynamic-w8-vnni`).split(',');
  const rounds = Number(arg('--rounds', '3'));
  const speed = arg('--speed', '1') === '1';
  const cache = arg('--graph-cache', path.join(os.tmpdir(), 'altclip-q8-schemes'));
  const flags = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '').split(/\s+/)
    .filter((f) => /^(avx2|avx512f|avx512_vnni|avx_vnni|avx512_bf16)$/.test(f));
  console.error(`cpu flags: ${flags.join(' ')} (vnni: ${cpuHasVnni()}); load: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);

  const processor = await AltCLIPProcessor.fromPretrained(model);
  const dir = 'test/fixtures/images';
  const images = fs.readdirSync(dir).filter((f) => /\.(png|jpe?g)$/.test(f)).sort().map((f) => path.join(dir, f));
  const px = (await processor.process({ images })).pixelValues!;
  const txt = await processor.process({ text: TEXTS, padding: true });
  const ids = txt.inputIds!, mask = txt.attentionMask!;
  const n = images.length, size = px.data.length / n;
  const pixels = (from: number, to: number) => new Tensor('float32', (px.data as Float32Array).slice(from * size, to * size), [to - from, ...px.dims.slice(1)]);
  const batch8 = pixels(0, 8);
  const [nt, len] = ids.dims as [number, number];
  const text32 = { inputIds: new Tensor('int64', BigInt64Array.from({ length: 32 * len }, (_, i) => (ids.data as BigInt64Array)[i % (nt * len)]!), [32, len]),
    attentionMask: new Tensor('int64', BigInt64Array.from({ length: 32 * len }, (_, i) => (mask.data as BigInt64Array)[i % (nt * len)]!), [32, len]) };

  const t0 = performance.now();
  const fp32 = await AltCLIPModel.fromPretrained(model, { threads, graphCacheDir: cache });
  const onlyText = arg('--only', '') === 'text';
  const refImg = onlyText ? undefined! : await fp32.getImageFeatures({ pixelValues: px });
  const refTxt = await fp32.getTextFeatures({ inputIds: ids, attentionMask: mask });
  if (!speed) await fp32.dispose();
  console.error(`fp32 reference: ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const models: Record<string, AltCLIPModel> = {};
  const report: Record<string, Record<string, unknown>> = {};
  for (const s of schemes) {
    process.env.ALTCLIP_Q8_SCHEME = s;
    const t = performance.now();
    const m = await AltCLIPModel.fromPretrained(model, { threads, graphCacheDir: cache, dtype: 'q8' });
    const img = onlyText ? refImg : await m.getImageFeatures({ pixelValues: px });
    const tx = await m.getTextFeatures({ inputIds: ids, attentionMask: mask });
    // batch invariance: image 3 alone vs in the batch of all; text 2 alone vs in the batch
    const one = onlyText ? undefined! : await m.getImageFeatures({ pixelValues: pixels(3, 4) });
    const dim = tx.dims[1]!;
    const oneT = await m.getTextFeatures({ inputIds: new Tensor('int64', (ids.data as BigInt64Array).slice(2 * len, 3 * len), [1, len]),
      attentionMask: new Tensor('int64', (mask.data as BigInt64Array).slice(2 * len, 3 * len), [1, len]) });
    const ci = onlyText ? [NaN] : rowCosines(refImg, img), ct = rowCosines(refTxt, tx);
    report[s] = {
      image_cosine_min: Math.min(...ci), image_cosine_mean: ci.reduce((a, b) => a + b) / ci.length,
      text_cosine_min: Math.min(...ct), text_cosine_mean: ct.reduce((a, b) => a + b) / ct.length,
      image_alone_vs_batch: onlyText ? NaN : maxAbsDiff(one.data as Float32Array, (img.data as Float32Array).slice(3 * dim, 4 * dim)),
      text_alone_vs_batch: maxAbsDiff(oneT.data as Float32Array, (tx.data as Float32Array).slice(2 * dim, 3 * dim)),
      load_and_first_s: (performance.now() - t) / 1000,
    };
    console.error(s, JSON.stringify(report[s]));
    if (speed) models[s] = m; else await m.dispose();
  }
  if (speed) {
    models.fp32 = fp32;
    const names = ['fp32', ...schemes];
    const times: Record<string, Record<string, number[]>> = { image8: {}, text32: {} };
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 ? [...names].reverse() : names;
      for (const row of ['image8', 'text32'] as const) for (const name of order) {
        const t = performance.now();
        if (row === 'image8') await models[name]!.getImageFeatures({ pixelValues: batch8 });
        else await models[name]!.getTextFeatures(text32);
        (times[row]![name] ??= []).push((performance.now() - t) / 1000);
      }
      console.error(`round ${r + 1}: ${JSON.stringify(times)}`);
    }
    for (const row of ['image8', 'text32']) for (const name of schemes) {
      (report[name]!)[`${row}_median_s`] = median(times[row]![name]!);
      (report[name]!)[`${row}_ratio_to_fp32`] = median(times[row]![name]!) / median(times[row]!.fp32!);
    }
    report.fp32 = { image8_median_s: median(times.image8!.fp32!), text32_median_s: median(times.text32!.fp32!) };
    await Promise.all(Object.values(models).map((m) => m.dispose()));
  }
  console.log(JSON.stringify({ cpu_flags: flags, threads, load_end: os.loadavg(), schemes: report }, null, 1));
}

main().catch((e) => { console.error(e); process.exit(1); });
