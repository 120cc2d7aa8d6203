// q8 accuracy on the tiny fixture checkpoints: our q8 features vs transformers' fp32 goldens
// (get_text_features / get_image_features of every golden combo), and zero-shot top-1 agreement.
// Started by bench/run.ts; prints one JSON line.
//
//   node --import tsx bench/q8_tiny.ts --graph-cache DIR [--threads N]
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Tensor } from 'onnxruntime-node';
import { readSafetensors } from './safetensors_io.js';

const here = dirname(fileURLToPath(import.meta.url));
const fixtures = resolve(here, '..', 'test', 'fixtures');

interface Model {
  getImageFeatures(a: { pixelValues: Tensor }): Promise<Tensor>;
  getTextFeatures(a: { inputIds: Tensor; attentionMask?: Tensor }): Promise<Tensor>;
  dispose(): Promise<void>;
}
interface Combo { name: string; model_call: { pixel_values: { concatenate_along_dim0: string[] } } }

function arg(k: string, dflt: string): string {
  const i = process.argv.indexOf(k);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

function rowsCos(a: Float32Array, b: Float32Array, dim: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < a.length / dim; r++) {
    let dot = 0, na = 0, nb = 0;
    for (let i = r * dim; i < (r + 1) * dim; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
    out.push(dot / Math.sqrt(na * nb));
  }
  return out;
}

/** For each image the index of the most similar text, then for each text the most similar image. */
function top1(img: Float32Array, txt: Float32Array, dim: number): number[] {
  const ni = img.length / dim, nt = txt.length / dim;
  const cos = (i: number, t: number) => rowsCos(img.subarray(i * dim, (i + 1) * dim), txt.subarray(t * dim, (t + 1) * dim), dim)[0];
  const best = (n: number, f: (j: number) => number) => { let b = 0; for (let j = 1; j < n; j++) if (f(j) > f(b)) b = j; return b; };
  return [...Array.from({ length: ni }, (_, i) => best(nt, (t) => cos(i, t))), ...Array.from({ length: nt }, (_, t) => best(ni, (i) => cos(i, t)))];
}

async function main() {
  const { AltCLIPModel } = (await import(pathToFileURL(resolve(here, '..', 'src', 'models', 'altclip.ts')).href)) as {
    AltCLIPModel: { fromPretrained(p: string, o: object): Promise<Model> } };
  const threads = Number(arg('--threads', '1'));
  const images = ['cat', 'coffee', 'gray_portrait', 'rgba_transparent', 'wide', 'tall', 'tiny_7x5', 'large', 'palette', 'exif_rotated'];
  const pixels = readSafetensors(join(fixtures, 'image_processor', 'pixel_values.safetensors'), images.map((n) => `pixel_values/${n}`));
  let minText = 1, minImage = 1, agree = 0, total = 0;
  for (const ckpt of ['tiny-altclip', 'tiny-altclip-b']) {
    const model = await AltCLIPModel.fromPretrained(join(fixtures, 'models', ckpt), { dtype: 'q8', threads, graphCacheDir: arg('--graph-cache', '') });
    const meta = JSON.parse(readFileSync(join(fixtures, 'goldens', `${ckpt}.json`), 'utf8')) as { combos: Combo[] };
    const want = meta.combos.flatMap((c) => [`${c.name}/inputs/input_ids`, `${c.name}/inputs/attention_mask`, `${c.name}/get_text_features`, `${c.name}/get_image_features`]);
    const gold = readSafetensors(join(fixtures, 'goldens', `${ckpt}.safetensors`), want);
    for (const c of meta.combos) {
      const ids = gold.get(`${c.name}/inputs/input_ids`)!, mask = gold.get(`${c.name}/inputs/attention_mask`)!;
      const names = c.model_call.pixel_values.concatenate_along_dim0;
      const px = new Float32Array(names.length * 3 * 224 * 224);
      names.forEach((n, i) => px.set(pixels.get(n)!.data as Float32Array, i * 3 * 224 * 224));
      const t = await model.getTextFeatures({ inputIds: new Tensor('int64', ids.data as BigInt64Array, ids.shape), attentionMask: new Tensor('int64', mask.data as BigInt64Array, mask.shape) });
      const im = await model.getImageFeatures({ pixelValues: new Tensor('float32', px, [names.length, 3, 224, 224]) });
      const gt = gold.get(`${c.name}/get_text_features`)!, gi = gold.get(`${c.name}/get_image_features`)!;
      const dim = gt.shape[1];
      minText = Math.min(minText, ...rowsCos(t.data as Float32Array, gt.data as Float32Array, dim));
      minImage = Math.min(minImage, ...rowsCos(im.data as Float32Array, gi.data as Float32Array, dim));
      const a = top1(im.data as Float32Array, t.data as Float32Array, dim), b = top1(gi.data as Float32Array, gt.data as Float32Array, dim);
      agree += a.filter((v, i) => v === b[i]).length; total += a.length;
    }
    await model.dispose();
  }
  console.log(JSON.stringify({ min_cos_text: minText, min_cos_image: minImage, top1_agree: agree, top1_total: total }));
}

main().catch((e) => { console.error(e instanceof Error ? e.stack ?? e.message : e); process.exit(1); });
