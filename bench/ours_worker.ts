// One benchmark configuration of our model, in its own process so that its peak RSS is its own.
// Started by bench/run.ts; prints one JSON line (times in seconds, RSS in bytes).
//
//   node --import tsx bench/ours_worker.ts --model DIR --inputs IN --out OUT --threads N --dtype fp32|q8
//        --graph-cache DIR [--rows image1,image8,text1,text32] [--warmup 1] [--reps 0] [--cache-prepacked] [--no-worker-threads]
//        [--all-inputs IN --all-out OUT]
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Tensor } from 'onnxruntime-node';
import { readSafetensors, writeSafetensors, type BenchTensor } from './safetensors_io.js';

const here = dirname(fileURLToPath(import.meta.url));
const MODEL_MODULE = resolve(here, '..', 'src', 'models', 'altclip.ts');

// The part of src/models/altclip.ts (ARCHITECTURE.md "Models") the benchmark uses. Imported at run
// time so the harness type-checks and runs its PyTorch side before the model exists.
interface Model {
  getImageFeatures(a: { pixelValues: Tensor }): Promise<Tensor>;
  getTextFeatures(a: { inputIds: Tensor; attentionMask?: Tensor }): Promise<Tensor>;
  dispose(): Promise<void>;
}
interface ModelClass {
  fromPretrained(path: string, o: { threads?: number; dtype?: string; graphCacheDir?: string; cachePrepacked?: boolean; workerThreads?: boolean }): Promise<Model>;
}

const DEFAULT_REPS: Record<string, number> = { image1: 5, image8: 3, text1: 10, text32: 5 };

function arg(k: string, dflt?: string): string {
  const i = process.argv.indexOf(k);
  const v = i >= 0 ? process.argv[i + 1] : dflt;
  if (v === undefined) throw new Error(`ours_worker: missing ${k}`);
  return v;
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

async function main() {
  if (!existsSync(MODEL_MODULE)) throw new Error(`${MODEL_MODULE} does not exist yet`);
  const { AltCLIPModel } = (await import(pathToFileURL(MODEL_MODULE).href)) as { AltCLIPModel: ModelClass };
  const rows = arg('--rows', '').split(',').filter(Boolean);
  const warmup = Number(arg('--warmup', '1'));
  const reps = Number(arg('--reps', '0'));

  const t0 = performance.now();
  const model = await AltCLIPModel.fromPretrained(arg('--model'), {
    threads: Number(arg('--threads')), dtype: arg('--dtype'), graphCacheDir: arg('--graph-cache'),
    cachePrepacked: process.argv.includes('--cache-prepacked'),
    workerThreads: !process.argv.includes('--no-worker-threads'),
  });
  const loadS = (performance.now() - t0) / 1000;
  const rssAfterLoad = process.resourceUsage().maxRSS * 1024;

  const x = readSafetensors(arg('--inputs'));
  const px = x.get('pixel_values')!, ids = x.get('input_ids')!, mask = x.get('attention_mask')!;
  const [nTexts, len] = ids.shape;
  const imageSize = px.shape.slice(1).reduce((a, b) => a * b, 1);
  const pixels = (n: number) => new Tensor('float32', (px.data as Float32Array).slice(0, n * imageSize), [n, ...px.shape.slice(1)]);
  const n1 = Number((mask.data as BigInt64Array).slice(0, len).reduce((a, b) => a + b, 0n)); // first prompt, unpadded
  const texts = (n: number, l: number) => {
    const pick = (d: BigInt64Array) => { const o = new BigInt64Array(n * l); for (let i = 0; i < n; i++) o.set(d.subarray(i * len, i * len + l), i * l); return o; };
    return { inputIds: new Tensor('int64', pick(ids.data as BigInt64Array), [n, l]), attentionMask: new Tensor('int64', pick(mask.data as BigInt64Array), [n, l]) };
  };
  const calls: Record<string, () => Promise<Tensor>> = {
    image1: () => model.getImageFeatures({ pixelValues: pixels(1) }),
    image8: () => model.getImageFeatures({ pixelValues: pixels(8) }),
    text1: () => model.getTextFeatures(texts(1, n1)),
    text32: () => model.getTextFeatures(texts(nTexts, len)),
  };

  const result: Record<string, { median_s: number; times_s: number[] }> = {};
  const features: Record<string, BenchTensor> = {};
  for (const r of rows) {
    if (!calls[r]) throw new Error(`ours_worker: unknown row ${r}`);
    for (let i = 0; i < warmup; i++) await calls[r]();
    const times: number[] = [];
    for (let i = 0; i < (reps || DEFAULT_REPS[r]); i++) {
      const t = performance.now();
      const out = await calls[r]();
      times.push((performance.now() - t) / 1000);
      features[r] = { dtype: 'F32', shape: [...out.dims], data: Float32Array.from(out.data as Float32Array) };
    }
    result[r] = { median_s: median(times), times_s: times };
  }
  // --all-inputs IN --all-out OUT: features of every fixture input (bench/inputs.ts writeAllInputs), untimed
  if (process.argv.includes('--all-inputs')) {
    const all = readSafetensors(arg('--all-inputs'));
    const pv = all.get('pixel_values')!;
    const image = await model.getImageFeatures({ pixelValues: new Tensor('float32', pv.data as Float32Array, pv.shape) });
    const ids = all.get('input_ids')!, am = all.get('attention_mask')!;
    const text = await model.getTextFeatures({ inputIds: new Tensor('int64', ids.data as BigInt64Array, ids.shape),
      attentionMask: new Tensor('int64', am.data as BigInt64Array, am.shape) });
    writeSafetensors(arg('--all-out'), {
      image: { dtype: 'F32', shape: [...image.dims], data: image.data as Float32Array },
      text: { dtype: 'F32', shape: [...text.dims], data: text.data as Float32Array },
    });
  }
  const out = process.argv.includes('--out') ? arg('--out') : undefined;
  if (out && rows.length) writeSafetensors(out, features);
  await model.dispose();
  console.log(JSON.stringify({ load_s: loadS, rss_after_load_bytes: rssAfterLoad, peak_rss_bytes: process.resourceUsage().maxRSS * 1024, rows: result }));
}

main().catch((e) => { console.error(e instanceof Error ? e.stack ?? e.message : e); process.exit(1); });
