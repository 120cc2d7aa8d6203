// Decompression bombs, one table row per decoder: every decoder's work is bounded by its input, its
// declared size and the pixel limit. A bomb over the limit is refused from its header before any pixel
// memory is taken; one just under it decodes to exactly its declared size (flat pixels, as declared),
// nothing more. Then the real-size bombs of issue 23 (a 342-byte RLE BMP declaring 9400 x 9400, a
// 258 KB flat PNG of the same size) go through the processor while a timer runs: the preparing
// threads (src/image/pool.ts) leave this thread's event loop free, and give the same bytes as
// preparing on this thread. A thread that dies fails only its own image.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';

import { CLIPImageProcessor, decodeImage, declaredSize, decodeThreads, resize, setDecodeThreads, setResampleBackend, type Resample } from '../src/image/index.js';
import { PreparePool } from '../src/image/pool.js';
import { flatPng, pngClaiming, rawBmpClaiming, rleDeltaBmp } from './helpers/bombs.js';

const LIMIT = 1_000_000;
const flat = (w: number, h: number) => sharp({ create: { width: w, height: h, channels: 3, background: { r: 40, g: 90, b: 200 } } });

/** A JPEG's SOF0 size fields rewritten to width x height (the scan data stays a small image's). */
function jpegClaiming(jpeg: Buffer, width: number, height: number): Buffer {
  const b = Buffer.from(jpeg);
  for (let p = 2; p + 9 < b.length; ) {
    const m = b[p + 1]!;
    if (m >= 0xc0 && m <= 0xc2) {
      b.writeUInt16BE(height, p + 5);
      b.writeUInt16BE(width, p + 7);
      return b;
    }
    p += 2 + b.readUInt16BE(p + 2);
  }
  throw new Error('no SOF');
}

interface Row {
  decoder: string;
  bytes: () => Promise<Uint8Array>;
  /** [width, height, channels] decoded, or the refusal. */
  want: [number, number, number] | RegExp;
}

const OVER = /exceeds the limit of 1000000 \(decompression bomb\?\)/;
const rows: Row[] = [
  { decoder: 'BMP RLE8, delta escapes, just under the limit', bytes: async () => rleDeltaBmp(1000, 1000), want: [1000, 1000, 3] },
  { decoder: 'BMP RLE4, delta escapes, just under the limit', bytes: async () => rleDeltaBmp(1000, 1000, true), want: [1000, 1000, 3] },
  { decoder: 'BMP RLE8, delta escapes, over the limit', bytes: async () => rleDeltaBmp(1001, 1000), want: OVER },
  { decoder: 'BMP RLE4, delta escapes, 9400 x 9400', bytes: async () => rleDeltaBmp(9400, 9400, true), want: OVER },
  { decoder: 'BMP uncompressed, header only, 60000 x 60000', bytes: async () => rawBmpClaiming(60000, 60000), want: OVER },
  { decoder: 'PNG flat RGB, just under the limit', bytes: async () => flatPng(1000, 1000), want: [1000, 1000, 3] },
  { decoder: 'PNG flat RGBA, just under the limit', bytes: async () => flatPng(1000, 1000, true), want: [1000, 1000, 4] },
  { decoder: 'PNG flat RGB, over the limit', bytes: async () => flatPng(1001, 1000), want: OVER },
  { decoder: 'PNG header claiming 50000 x 50000', bytes: async () => pngClaiming(50000, 50000), want: OVER },
  { decoder: 'JPEG flat, just under the limit', bytes: () => flat(1000, 1000).jpeg().toBuffer(), want: [1000, 1000, 3] },
  { decoder: 'JPEG SOF claiming 65535 x 65535', bytes: async () => jpegClaiming(await flat(64, 64).jpeg().toBuffer(), 65535, 65535), want: OVER },
  { decoder: 'GIF flat, just under the limit', bytes: () => flat(1000, 1000).gif().toBuffer(), want: [1000, 1000, 4] },
  { decoder: 'GIF flat, over the limit', bytes: () => flat(1001, 1000).gif().toBuffer(), want: OVER },
  { decoder: 'WebP flat lossless, just under the limit', bytes: () => flat(1000, 1000).webp({ lossless: true }).toBuffer(), want: [1000, 1000, 3] },
  { decoder: 'WebP flat lossless, over the limit', bytes: () => flat(1001, 1000).webp({ lossless: true }).toBuffer(), want: OVER },
  { decoder: 'TIFF (not decoded at all)', bytes: () => flat(1000, 1000).tiff().toBuffer(), want: /unsupported image format TIFF/ },
];

test('bomb per decoder: refused from the header over the pixel limit, exactly the declared size under it', async () => {
  const failures: string[] = [];
  for (const row of rows) {
    const bytes = await row.bytes();
    const declared = await declaredSize(bytes);
    const before = process.memoryUsage().arrayBuffers;
    let grew = 0;
    const got = await decodeImage(bytes, '<bomb>', { maxPixels: LIMIT })
      .finally(() => (grew = process.memoryUsage().arrayBuffers - before))
      .catch((e: Error) => e);
    const mb = (grew / 2 ** 20).toFixed(1);
    console.log(`# ${row.decoder}: ${bytes.length} bytes, declares ${declared ? `${declared.width}x${declared.height}` : 'no size'}, ` +
      `${got instanceof Error ? `refused (${got.message.slice(0, 80)})` : `${got.width}x${got.height}x${got.channels}`}, buffers +${mb} MB`);
    if (row.want instanceof RegExp) {
      if (!(got instanceof Error) || !row.want.test(got.message) || !got.message.startsWith('<bomb>')) failures.push(`${row.decoder}: ${got instanceof Error ? got.message : 'decoded'}`);
      // refused from the header: no pixel memory was taken
      else if (grew > 4 * 2 ** 20) failures.push(`${row.decoder}: refused, but ${mb} MB of buffers were taken first`);
    } else {
      const [w, h, c] = row.want;
      if (got instanceof Error) failures.push(`${row.decoder}: ${got.message}`);
      else {
        if (got.width !== w || got.height !== h || got.channels !== c || got.data.length !== w * h * c) failures.push(`${row.decoder}: ${got.width}x${got.height}x${got.channels}, ${got.data.length} bytes`);
        if (!declared || declared.width !== w || declared.height !== h) failures.push(`${row.decoder}: declaredSize ${JSON.stringify(declared)}`);
        // flat: every pixel is the first one (the decoder made nothing up)
        const d = got.data;
        const n = got.channels;
        for (let i = n; i < d.length; i++) {
          if (d[i] !== d[i % n]) {
            failures.push(`${row.decoder}: byte ${i} is ${d[i]}, pixel 0's is ${d[i % n]}`);
            break;
          }
        }
      }
    }
  }
  assert.deepEqual(failures, []);
});

test('real-size bombs (9400 x 9400) are prepared off this thread: its timers keep firing, and the bytes equal preparing here', async () => {
  const processor = new CLIPImageProcessor({}); // CLIPImageProcessor defaults: 224 shortest edge, 224 crop
  const bombs = [rleDeltaBmp(9400, 9400), flatPng(9400, 9400)];
  assert.ok(bombs[0]!.length < 400 && bombs[1]!.length < 300_000, `${bombs.map((b) => b.length)} bytes`);
  const threads = decodeThreads();
  assert.ok(threads >= 1, 'the pool is on by default');
  let ticks = 0;
  let last = performance.now();
  let maxGap = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 5);
  const t0 = performance.now();
  let pooled: Float32Array;
  try {
    pooled = (await processor.preprocess(bombs)).pixelValues.data as Float32Array;
  } finally {
    clearInterval(timer);
  }
  const ms = performance.now() - t0;
  console.log(`# ${threads} preparing thread(s): 2 bombs in ${ms.toFixed(0)} ms; this thread's 5 ms timer fired ${ticks} times, longest gap ${maxGap.toFixed(0)} ms`);
  // On this thread the BMP's 88 M pixels are a synchronous loop of seconds: no timer fires during it.
  // Off it, the timer fires throughout (the count is not a speed bound: any tick at all while the
  // decode runs shows the event loop was not held for the whole of it).
  assert.ok(ticks >= 2, `the timer fired ${ticks} times in ${ms.toFixed(0)} ms`);
  setDecodeThreads(0);
  try {
    const here = (await processor.preprocess(bombs)).pixelValues.data as Float32Array;
    assert.equal(Buffer.compare(Buffer.from(here.buffer), Buffer.from(pooled!.buffer)), 0, 'the same float32 bytes on this thread and on the pool');
  } finally {
    setDecodeThreads(threads);
  }
});

test('the wasm horizontal pass, run in strips of rows, gives the JS passes\' bytes on images taller than one strip', () => {
  // 8 MB strips: a 3001-px-wide RGB row is 9003 bytes, so 930 rows a strip; 2001 rows = 3 strips, the last odd
  const [w, h] = [3001, 2001];
  const data = new Uint8Array(w * h * 3);
  let x = 12345;
  for (let i = 0; i < data.length; i++) data[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  const image = { data, width: w, height: h, channels: 3 as const };
  const cases: [number, number, Resample, { left: number; top: number; width: number; height: number } | undefined][] = [
    [336, 224, 'bicubic', { left: 56, top: 0, width: 224, height: 224 }],
    [1500, 2001, 'lanczos', undefined], // horizontal only: every source row
    [600, 1000, 'bilinear', { left: 10, top: 333, width: 500, height: 401 }],
  ];
  for (const [tw, th, filter, region] of cases) {
    const wasm = resize(image, tw, th, filter, region);
    setResampleBackend('js');
    try {
      const js = resize(image, tw, th, filter, region);
      assert.equal(Buffer.compare(Buffer.from(wasm.data), Buffer.from(js.data)), 0, `${tw}x${th} ${filter}`);
    } finally {
      setResampleBackend('wasm');
    }
  }
});

test('a preparing thread that dies fails only its own image, with a clear error; the next image gets a new thread', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-pool-'));
  try {
    // a stand-in for prepare_worker: answers with a 1x1 image, or ends its thread for the input "die"
    const module = path.join(dir, 'dying_worker.mjs');
    fs.writeFileSync(module, `import { parentPort, threadId } from 'node:worker_threads';
parentPort.on('message', (job) => {
  if (job.input === 'die') process.exit(3);
  parentPort.postMessage({ id: job.id, image: { data: new Uint8Array([threadId, 0, 0]), width: 1, height: 1, channels: 3 }, decodedPixels: 1 });
});\n`);
    const pool = new PreparePool(1, pathToFileURL(module).href);
    const job = (input: string) => pool.prepare({ input, cfg: new CLIPImageProcessor({}).config, decode: {}, keepGray: false });
    const first = await job('a');
    const [dead, queued] = await Promise.allSettled([job('die'), job('b')]);
    assert.equal(dead.status, 'rejected');
    assert.match((dead as PromiseRejectedResult).reason.message, /the image decoding thread stopped: exit code 3/);
    assert.equal(queued.status, 'fulfilled', 'the image queued behind it runs on a new thread');
    assert.notEqual((queued as PromiseFulfilledResult<{ data: Uint8Array }>).value.data[0], first.data[0], 'a different thread');
    pool.close();
    await assert.rejects(job('c'), /closed/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
