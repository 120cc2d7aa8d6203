// Does an fp16 checkpoint save memory? Writes an F16 copy of the full-size benchmark checkpoint
// (bench/.cache/, once), loads it like any checkpoint (weights are cast to float32 in the graph) and
// measures warm load, peak RSS, image batch 1 / text batch 1 times and cosine vs the F32 checkpoint,
// each model in its own process (bench/ours_worker.ts). Prints a markdown table.
//
//   node --import tsx bench/fp16.ts [--threads N]
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { openSafetensors, readTensorBytes } from '../src/weights/index.js';
import { writeSafetensors } from '../src/weights/safetensors_writer.js';
import { defaultCheckpointDir, ensureCheckpoint } from './generate_checkpoint.js';
import { readSafetensors } from './safetensors_io.js';

const here = dirname(fileURLToPath(import.meta.url));
const cache = join(here, '.cache');
const arg = (k: string, d: string) => { const i = process.argv.indexOf(k); return i >= 0 ? process.argv[i + 1]! : d; };
const threads = arg('--threads', String(availableParallelism()));

/** float32 -> IEEE half bits, rounding to nearest even (as torch's .half()). */
function toHalf(src: Float32Array, dst: Uint16Array): void {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = ((x >>> 23) & 0xff) - 112;
    let mant = x & 0x7fffff;
    if (exp >= 31) { dst[i] = sign | 0x7c00 | (((x >>> 23) & 0xff) === 0xff && mant ? 0x200 : 0); continue; }
    if (exp <= 0) {
      if (exp < -10) { dst[i] = sign; continue; }
      mant |= 0x800000;
      const shift = 14 - exp;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1), half = 1 << (shift - 1);
      if (rem > half || (rem === half && (h & 1))) h++;
      dst[i] = sign | h;
      continue;
    }
    let h = sign | (exp << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
    dst[i] = h;
  }
}

function ensureF16(src: string, dst: string): string {
  if (existsSync(join(dst, 'model.safetensors'))) return dst;
  const tmp = `${dst}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  for (const f of readdirSync(src)) if (f !== 'model.safetensors') copyFileSync(join(src, f), join(tmp, f));
  const refs = [...openSafetensors(join(src, 'model.safetensors')).values()];
  writeSafetensors(join(tmp, 'model.safetensors'), refs.map((r) => ({ name: r.name, dtype: r.dtype === 'F32' ? 'F16' as const : r.dtype, shape: r.shape })),
    (i) => {
      const r = refs[i]!;
      const bytes = readTensorBytes(r);
      if (r.dtype !== 'F32') return bytes;
      const out = new Uint16Array(bytes.byteLength / 4);
      toHalf(new Float32Array(bytes.buffer, bytes.byteOffset, out.length), out);
      return new Uint8Array(out.buffer);
    }, { format: 'pt' });
  rmSync(dst, { recursive: true, force: true });
  renameSync(tmp, dst);
  return dst;
}

interface Run { load_s: number; peak_rss_bytes: number; rows: Record<string, { median_s: number }> }

function worker(model: string, graphs: string, out: string): Run {
  const args = ['--import', 'tsx', join(here, 'ours_worker.ts'), '--model', model, '--inputs', join(cache, 'inputs.safetensors'),
    '--threads', threads, '--dtype', 'fp32', '--graph-cache', graphs, '--rows', 'image1,text1', '--reps', '3', '--out', out];
  spawnSync(process.execPath, args.filter((a) => a !== '--rows' && a !== 'image1,text1'), { stdio: 'ignore' }); // builds the graphs
  const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ours_worker failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Run;
}

function minCosine(a: Float32Array, b: Float32Array, dim: number): number {
  let worst = 1;
  for (let r = 0; r < a.length / dim; r++) {
    let ab = 0, aa = 0, bb = 0;
    for (let i = r * dim; i < (r + 1) * dim; i++) { ab += a[i]! * b[i]!; aa += a[i]! ** 2; bb += b[i]! ** 2; }
    worst = Math.min(worst, ab / Math.sqrt(aa * bb));
  }
  return worst;
}

const f32Dir = ensureCheckpoint(defaultCheckpointDir());
if (!existsSync(join(cache, 'inputs.safetensors'))) throw new Error('bench/.cache/inputs.safetensors is missing: run `npm run bench` once first');
const f16Dir = ensureF16(f32Dir, `${f32Dir}-f16`);
const size = (d: string) => statSync(join(d, 'model.safetensors')).size;
const runs = { F32: worker(f32Dir, join(cache, 'graphs-fp32'), join(cache, 'out', 'fp16-bench-f32.safetensors')),
  F16: worker(f16Dir, join(cache, 'graphs-f16'), join(cache, 'out', 'fp16-bench-f16.safetensors')) };
const a = readSafetensors(join(cache, 'out', 'fp16-bench-f32.safetensors'));
const b = readSafetensors(join(cache, 'out', 'fp16-bench-f16.safetensors'));
const cos = (k: string) => minCosine(a.get(k)!.data as Float32Array, b.get(k)!.data as Float32Array, a.get(k)!.shape[1]!);
const gb = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;
console.log(`| checkpoint | file | warm load | peak RSS | image batch 1 | text batch 1 |\n|---|---|---|---|---|---|`);
for (const [name, dir] of [['F32', f32Dir], ['F16', f16Dir]] as const) {
  const r = runs[name];
  console.log(`| ${name} | ${gb(size(dir))} | ${r.load_s.toFixed(2)} s | ${gb(r.peak_rss_bytes)} | ${(r.rows.image1!.median_s * 1000).toFixed(0)} ms | ${(r.rows.text1!.median_s * 1000).toFixed(0)} ms |`);
}
console.log(`\nF16 vs F32 features, lowest cosine: image ${cos('image1').toFixed(6)}, text ${cos('text1').toFixed(6)}`);
