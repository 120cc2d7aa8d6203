// Resampling filters and decoders vs Pillow 9.4 beyond the shared fixtures: every filter
// (nearest, lanczos, bilinear, bicubic, box, hamming), up/down/one-axis resizes, and formats /
// modes the fixtures lack: every PNG colour type x bit depth with and without tRNS (and interlaced),
// every BMP bit depth / compression (BI_RGB, BI_BITFIELDS, BI_RLE8, BI_RLE4) / header Pillow reads,
// JPEG subsampling/progressive/gray/CMYK, WebP, GIF — each decoded and run through
// CLIPImageProcessor — the malformed files Pillow refuses, and randomly damaged RLE streams (the same
// pixels where Pillow decodes them, a refusal where it does not). Goldens: test/image_pillow_goldens.json
// and the inputs in test/fixtures/image_formats/, both made by image_pillow_goldens.py with Debian's
// Pillow 9.4.0 and CLIPImageProcessor's arithmetic (checked there against the shared pixel goldens).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { CLIPImageProcessor, convertToRGB, decodeImage, loadImage, resize, setResampleBackend, type RawImage, type Resample } from '../src/image/index.js';
import { RESAMPLE_WASM } from '../src/image/resample_wasm.js';
import { assembleResampleWasm } from '../scripts/build-wasm.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const G = JSON.parse(fs.readFileSync(path.join(here, 'image_pillow_goldens.json'), 'utf8')) as {
  pillow: string;
  resize: { width: number; height: number; channels: 1 | 3; to: [number, number]; filter: Resample; sha256: string }[];
  decode: {
    name: string; file: string; format: string; mode: string; rawmode: string; gray: boolean; width: number; height: number;
    rgb_sha256: string; center_cropped_sha256: string; pixel_values_sha256: string;
  }[];
  refused: { name: string; file: string; pillow_error: string; error_pattern: string }[];
  rle_fuzz: { base: string; edits: [number, number][]; truncate: number | null; rgb_sha256?: string; pillow_error?: string }[];
};

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** The synthetic image of image_pillow_goldens.py (same integer formula). */
function synth(w: number, h: number, c: 1 | 3): RawImage {
  const data = new Uint8Array(w * h * c);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let ch = 0; ch < c; ch++) {
        data[(y * w + x) * c + ch] = (x * 37 + y * 91 + ch * 53 + (((x * x * 7 + y * 3 + ch) * (y + 5)) % 97)) & 255;
      }
    }
  }
  return { data, width: w, height: h, channels: c };
}

for (const backend of ['wasm', 'js'] as const) {
  test(`every filter and size matches Pillow Image.resize bit for bit (${backend} passes)`, () => {
    setResampleBackend(backend);
    try {
      const failures: string[] = [];
      for (const c of G.resize) {
        const out = resize(synth(c.width, c.height, c.channels), c.to[0], c.to[1], c.filter);
        assert.deepEqual([out.width, out.height, out.channels], [c.to[0], c.to[1], c.channels]);
        if (sha256(out.data as Uint8Array) !== c.sha256) failures.push(`${c.width}x${c.height}x${c.channels} -> ${c.to.join('x')} ${c.filter}`);
      }
      assert.deepEqual(failures, [], `${failures.length} of ${G.resize.length} resizes differ from Pillow`);
      assert.ok(G.resize.length >= 80);
    } finally {
      setResampleBackend('wasm');
    }
  });
}

test('every decode case keeps its Pillow mode: gray as 1 channel (+ alpha), colour as 3 (+ alpha)', async () => {
  // The processor resizes gray as one channel (a third of the work) and replicates it at the end.
  const failures: string[] = [];
  for (const c of G.decode) {
    const img = await loadImage(path.join(here, c.file)).catch((e: Error) => e);
    const want = c.gray ? [1, 2] : [3, 4];
    if (img instanceof Error) failures.push(`${c.name}: ${img.message}`);
    else if (img.width !== c.width || img.height !== c.height) failures.push(`${c.name}: ${img.width}x${img.height}, Pillow ${c.width}x${c.height}`);
    else if (!want.includes(img.channels)) failures.push(`${c.name}: ${img.channels} channels for Pillow mode ${c.mode} (${c.rawmode})`);
  }
  assert.deepEqual(failures, []);
});

test('decoded formats and modes match Pillow Image.open(...).convert("RGB")', async () => {
  const failures: string[] = [];
  for (const c of G.decode) {
    const img = await loadImage(path.join(here, c.file)).then(convertToRGB, (e: Error) => e);
    if (img instanceof Error) failures.push(`${c.name}: ${img.message}`);
    else if (sha256(img.data as Uint8Array) !== c.rgb_sha256) failures.push(`${c.name} (${c.format} ${c.mode})`);
  }
  assert.deepEqual(failures, [], `${failures.length} of ${G.decode.length} decodes differ from Pillow`);
});

test('CLIPImageProcessor pixel values of every decode case equal the reference (uint8 crop and float32, bit for bit)', async () => {
  const processor = await CLIPImageProcessor.fromPretrained(path.join(here, 'fixtures', 'image_processor'));
  const failures: string[] = [];
  for (const c of G.decode) {
    const file = path.join(here, c.file);
    try {
      const crop = await processor.preprocessUint8(file);
      if (sha256(crop.data as Uint8Array) !== c.center_cropped_sha256) failures.push(`${c.name}: center crop`);
      const { pixelValues } = await processor.preprocess(file);
      const f32 = pixelValues.data as Float32Array;
      if (sha256(new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength)) !== c.pixel_values_sha256) failures.push(`${c.name}: pixel_values`);
    } catch (e) {
      failures.push(`${c.name}: ${(e as Error).message}`);
    }
  }
  assert.deepEqual(failures, [], `${failures.length} differences over ${G.decode.length} files`);
});

test('files Pillow refuses (truncated or malformed RLE, unsupported layouts) are refused with an error naming the file', async () => {
  assert.ok(G.refused.length >= 15);
  const failures: string[] = [];
  for (const c of G.refused) {
    const file = path.join(here, c.file);
    const got = await loadImage(file).then(() => null, (e: Error) => e.message);
    if (got === null) failures.push(`${c.name}: decoded (Pillow: ${c.pillow_error})`);
    else if (!got.startsWith(`${file}: `) || !new RegExp(c.error_pattern).test(got)) failures.push(`${c.name}: "${got}" (want /${c.error_pattern}/ naming the file)`);
  }
  assert.deepEqual(failures, []);
});

test('RLE streams with random damage: the same pixels as Pillow where it decodes them, a clear error where it does not', async () => {
  const failures: string[] = [];
  let decoded = 0;
  for (const [i, c] of G.rle_fuzz.entries()) {
    const base = G.decode.find((d) => d.name === c.base)!;
    const bytes = new Uint8Array(fs.readFileSync(path.join(here, base.file)));
    for (const [pos, val] of c.edits) bytes[pos] = val;
    const name = `<fuzz ${i}: ${c.base}>`;
    const got = await decodeImage(c.truncate === null ? bytes : bytes.subarray(0, c.truncate), name).then(convertToRGB, (e: Error) => e);
    if (got instanceof Error) {
      if (c.rgb_sha256) failures.push(`${name}: refused (${got.message}) but Pillow decodes it`);
      else if (!got.message.startsWith(`${name}: invalid or unsupported BMP (`)) failures.push(`${name}: unclear error ${got.message}`);
    } else if (!c.rgb_sha256) {
      failures.push(`${name}: decoded but Pillow refuses it (${c.pillow_error})`);
    } else if (sha256(got.data as Uint8Array) !== c.rgb_sha256) {
      failures.push(`${name}: pixels differ from Pillow`);
    } else {
      decoded++;
    }
  }
  assert.deepEqual(failures, []);
  console.log(`${G.rle_fuzz.length} damaged RLE files: ${decoded} decoded as Pillow does, ${G.rle_fuzz.length - decoded} refused as Pillow does`);
  assert.ok(decoded >= 20 && G.rle_fuzz.length - decoded >= 20, 'the fuzz cases cover both outcomes');
});

test('after an image too large to keep wasm memory for, the next instance gives the same bytes', () => {
  // 68 MB: the wasm instance is dropped after use (its memory grew past 64 MB)
  const tile = synth(4200, 60, 3).data;
  const big: RawImage = { data: new Uint8Array(4200 * 5400 * 3), width: 4200, height: 5400, channels: 3 };
  for (let y = 0; y < 5400; y += 60) big.data.set(tile, y * 4200 * 3);
  const a = resize(big, 420, 540, 'bicubic');
  const b = resize(big, 420, 540, 'bicubic'); // a fresh instance
  assert.equal(sha256(a.data as Uint8Array), sha256(b.data as Uint8Array));
  const c = G.resize.find((r) => r.filter === 'lanczos' && r.channels === 3)!;
  assert.equal(sha256(resize(synth(c.width, c.height, 3), c.to[0], c.to[1], 'lanczos').data as Uint8Array), c.sha256);
});

test('the shipped resample_wasm.ts is what scripts/build-wasm.ts assembles from resample.wat', async () => {
  assert.equal(Buffer.from(await assembleResampleWasm()).toString('base64'), RESAMPLE_WASM);
});
