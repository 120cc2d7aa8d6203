// In-process, interleaved A/B of q8 variants on the full-size model (issue 19), for a shared machine
// where process-to-process timings are noise: every variant is loaded in this one process, then the
// rows are timed round by round, A B B A A B ... (the order flips each round), and the medians compared.
//
//   node --import tsx bench/ab_q8.ts --model bench/.cache/altclip-large-random-s1234 \
//     --inputs bench/.cache/inputs.safetensors [--rows image8,text32] [--rounds 6] [--threads 2]
//     [--variants w7,w8] [--budget-s 900]
//
// Variants: q8 scheme names (ALTCLIP_Q8_SCHEME, src/models/quantize.ts' Q8_SCHEMES); the short names w7 /
// w8 are the per-tensor schemes from before issue 25 (ort-dynamic-w7 / ort-dynamic-w8-vnni).
// Cosines are per row against fp32 features computed first (fp32 then disposed to bound memory).
import { Tensor } from 'onnxruntime-node';

import { AltCLIPModel } from '../src/models/altclip.js';
import { readSafetensors } from './safetensors_io.js';

function arg(k: string, dflt?: string): string {
  const i = process.argv.indexOf(k);
  const v = i >= 0 ? process.argv[i + 1] : dflt;
  if (v === undefined) throw new Error(`ab_q8: missing ${k}`);
  return v;
}
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };

function minCosine(a: Tensor, b: Tensor): number {
  const [rows, dim] = a.dims as [number, number];
  const x = a.data as Float32Array, y = b.data as Float32Array;
  let worst = 1;
  for (let r = 0; r < rows; r++) {
    let ab = 0, aa = 0, bb = 0;
    for (let i = r * dim; i < (r + 1) * dim; i++) { ab += x[i]! * y[i]!; aa += x[i]! ** 2; bb += y[i]! ** 2; }
    worst = Math.min(worst, ab / Math.sqrt(aa * bb));
  }
  return worst;
}

const VARIANTS: Record<string, string> = { w7: 'ort-dynamic-w7', w8: 'ort-dynamic-w8-vnni' };

async function main() {
  const modelDir = arg('--model');
  const threads = Number(arg('--threads', '2'));
  const rows = arg('--rows', 'image8,text32').split(',');
  const rounds = Number(arg('--rounds', '6'));
  const budget = Number(arg('--budget-s', '900')) * 1000;
  const names = arg('--variants', 'w7,w8').split(',');
  const cacheRoot = arg('--graph-cache', 'bench/.cache/graphs-ab');

  const x = readSafetensors(arg('--inputs'));
  const px = x.get('pixel_values')!, ids = x.get('input_ids')!, mask = x.get('attention_mask')!;
  const [nTexts, len] = ids.shape as [number, number];
  const imageSize = px.shape.slice(1).reduce((a, b) => a * b, 1);
  const pixels = (n: number) => new Tensor('float32', (px.data as Float32Array).slice(0, n * imageSize), [n, ...px.shape.slice(1)]);
  const text = () => ({ inputIds: new Tensor('int64', ids.data as BigInt64Array, [nTexts, len]), attentionMask: new Tensor('int64', mask.data as BigInt64Array, [nTexts, len]) });
  const call = (m: AltCLIPModel, r: string) => (r === 'image8' ? m.getImageFeatures({ pixelValues: pixels(8) })
    : r === 'image1' ? m.getImageFeatures({ pixelValues: pixels(1) }) : m.getTextFeatures(text()));

  const t0 = performance.now();
  const fp32 = await AltCLIPModel.fromPretrained(modelDir, { threads, graphCacheDir: `${cacheRoot}-fp32` });
  const ref: Record<string, Tensor> = {};
  for (const r of rows) ref[r] = await call(fp32, r);
  await fp32.dispose();
  console.error(`fp32 reference features: ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const models: Record<string, AltCLIPModel> = {};
  for (const n of names) {
    process.env.ALTCLIP_Q8_SCHEME = VARIANTS[n] ?? n;
    const t = performance.now();
    models[n] = await AltCLIPModel.fromPretrained(modelDir, { threads, dtype: 'q8', graphCacheDir: `${cacheRoot}-q8` });
    for (const r of rows) await call(models[n]!, r); // warm-up
    console.error(`${n}: loaded + warm-up ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }

  const times: Record<string, Record<string, number[]>> = {};
  const cos: Record<string, Record<string, number>> = {};
  const start = performance.now();
  for (let round = 0; round < rounds && performance.now() - start < budget; round++) {
    const order = round % 2 ? [...names].reverse() : names;
    for (const r of rows) for (const n of order) {
      const t = performance.now();
      const out = await call(models[n]!, r);
      ((times[r] ??= {})[n] ??= []).push((performance.now() - t) / 1000);
      (cos[r] ??= {})[n] = minCosine(ref[r]!, out);
    }
    console.error(`round ${round + 1}: ${rows.map((r) => `${r} ${names.map((n) => `${n} ${times[r]![n]!.at(-1)!.toFixed(2)}s`).join(' / ')}`).join('; ')}`);
  }
  await Promise.all(Object.values(models).map((m) => m.dispose()));
  const result = Object.fromEntries(rows.map((r) => [r, Object.fromEntries(names.map((n) => [n, {
    median_s: median(times[r]![n]!), times_s: times[r]![n], min_cosine_vs_fp32: cos[r]![n],
    ratio_to_first: median(times[r]![n]!) / median(times[r]![names[0]!]!),
  }]))]));
  console.log(JSON.stringify({ threads, rows: result }, null, 1));
}

main().catch((e) => { console.error(e); process.exit(1); });
