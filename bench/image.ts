// Image preprocessing throughput: decode + CLIPImageProcessor (BAAI/AltCLIP settings: bicubic
// shortest edge 224, center crop, rescale, normalize) of one ~1000-px JPEG, single thread, images/s —
// ours (sharp with concurrency 1 + the Pillow-exact resampler) side by side with Pillow in the same
// run (Debian's python3-pil + numpy, the same steps transformers takes), when it is installed.
//
//   node --import tsx bench/image.ts [--image FILE] [--seconds 3] [--rounds 3] [--python /usr/bin/python3]
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

import { CLIPImageProcessor, convertToRGB, loadImage } from '../src/image/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const image = path.resolve(arg('image', path.join(root, 'test/fixtures/images/large.jpg')));
const seconds = Number(arg('seconds', '3'));
const rounds = Number(arg('rounds', '3'));
const python = arg('python', '/usr/bin/python3');
const configDir = path.join(root, 'test/fixtures/image_processor');

sharp.concurrency(1); // one libvips thread
sharp.cache(false); // no result caching across iterations

interface Rate {
  wall: number; // images per wall-clock second
  cpu: number; // images per CPU second of this process (all threads: JS + libvips)
}

/** Runs `fn` repeatedly for `seconds`; returns items per second of wall and of CPU time. */
async function rate(fn: () => Promise<unknown> | unknown): Promise<Rate> {
  let n = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  while (performance.now() < end) {
    await fn();
    n++;
  }
  const c = process.cpuUsage(c0);
  return { wall: (n * 1000) / (performance.now() - t0), cpu: (n * 1e6) / (c.user + c.system) };
}
const better = (a: Rate, b: Rate): Rate => ({ wall: Math.max(a.wall, b.wall), cpu: Math.max(a.cpu, b.cpu) });

const PILLOW = String.raw`
import sys, time
import numpy as np
from PIL import Image, __version__
path, seconds = sys.argv[1], float(sys.argv[2])
mean = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
std = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
def run():
    # transformers' CLIPImageProcessor on a PIL image: convert_to_rgb, resize (PIL), center_crop,
    # rescale (float64 -> float32), normalize (float32), HWC -> CHW
    im = Image.open(path)
    if im.mode != "RGB":
        im = im.convert("RGB")
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(224 * long / short)
    size = (224, new_long) if w <= h else (new_long, 224)
    a = np.array(im.resize(size, resample=Image.BICUBIC, reducing_gap=None))
    top, left = (a.shape[0] - 224) // 2, (a.shape[1] - 224) // 2
    a = a[top:top + 224, left:left + 224]
    x = (a * (1 / 255)).astype(np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))
for _ in range(3):
    run()
n, t0, c0 = 0, time.perf_counter(), time.process_time()
while time.perf_counter() - t0 < seconds:
    run(); n += 1
print(__version__, n / (time.perf_counter() - t0), n / (time.process_time() - c0))
`;

function pillowRate(): { version: string; rate: Rate } | string {
  const r = spawnSync(python, ['-c', PILLOW, image, String(seconds)], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' } });
  if (r.error) return `not run (${python}: ${r.error.message})`;
  if (r.status !== 0) return `not run (${(r.stderr.trim().split('\n').pop() ?? '').slice(0, 120)}; apt-get install python3-pil python3-numpy)`;
  const [version, wall, cpu] = r.stdout.trim().split(' ');
  return { version, rate: { wall: Number(wall), cpu: Number(cpu) } };
}

const cpu = (spawnSync('lscpu', { encoding: 'utf8' }).stdout.match(/Model name:\s*(.*)/) ?? [])[1] ?? os.cpus()[0]?.model;
const processor = await CLIPImageProcessor.fromPretrained(configDir);
const decoded = await loadImage(image);
console.log(`machine: ${cpu}, ${os.cpus().length} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
console.log(`node ${process.version}, sharp ${sharp.versions.sharp} (libvips ${sharp.versions.vips}), sharp.concurrency(${sharp.concurrency()})`);
console.log(`image: ${path.relative(root, image)} (${decoded.width}x${decoded.height}, ${decoded.channels} channels); ${rounds} rounds of ${seconds} s each, best round reported\n`);

// warm up the JIT and the wasm module
for (let i = 0; i < 5; i++) await processor.preprocess(image);

const zero: Rate = { wall: 0, cpu: 0 };
const best = { ours: zero, decode: zero, transform: zero, pillow: zero };
let pillowNote = '';
let pillowVersion = '';
const rgb = convertToRGB(decoded);
for (let round = 0; round < rounds; round++) {
  best.ours = better(best.ours, await rate(() => processor.preprocess(image)));
  best.decode = better(best.decode, await rate(() => loadImage(image)));
  best.transform = better(best.transform, await rate(() => processor.preprocess(rgb)));
  const p = pillowRate();
  if (typeof p === 'string') pillowNote = p;
  else {
    best.pillow = better(best.pillow, p.rate);
    pillowVersion = p.version;
  }
}

const fmt = (r: Rate) =>
  `${r.wall.toFixed(1).padStart(7)} images/s wall (${(1000 / r.wall).toFixed(2).padStart(6)} ms)   ` +
  `${r.cpu.toFixed(1).padStart(7)} images/CPU-s (${(1000 / r.cpu).toFixed(2).padStart(6)} ms CPU)`;
console.log(`ours: decode + preprocess   ${fmt(best.ours)}`);
console.log(`      decode only           ${fmt(best.decode)}`);
console.log(`      preprocess only       ${fmt(best.transform)}   (resize + crop + normalize of decoded RGB)`);
if (best.pillow.wall > 0) {
  console.log(`Pillow ${pillowVersion} + numpy        ${fmt(best.pillow)}`);
  console.log(`\nratio ours / Pillow: ${(best.ours.wall / best.pillow.wall).toFixed(2)}x by wall time, ${(best.ours.cpu / best.pillow.cpu).toFixed(2)}x by CPU time`);
  console.log('(on a busy machine CPU time is the steadier measure; both sides are single-threaded)');
} else {
  console.log(`Pillow: ${pillowNote}`);
}
