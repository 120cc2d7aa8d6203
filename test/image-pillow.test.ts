// Resampling filters and decoders vs Pillow 9.4 beyond the shared fixtures: every filter
// (nearest, lanczos, bilinear, bicubic, box, hamming), up/down/one-axis resizes, and formats /
// modes the fixtures lack (16-bit and sub-byte PNG, tRNS, LA, JPEG subsampling/progressive/gray/
// CMYK, WebP, GIF, BMP). Goldens: test/image_pillow_goldens.json, made by image_pillow_goldens.py.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { convertToRGB, decodeImage, resize, setResampleBackend, type RawImage, type Resample } from '../src/image/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const G = JSON.parse(fs.readFileSync(path.join(here, 'image_pillow_goldens.json'), 'utf8')) as {
  pillow: string;
  resize: { width: number; height: number; channels: 1 | 3; to: [number, number]; filter: Resample; sha256: string }[];
  decode: { name: string; format: string; mode: string; width: number; height: number; base64: string; rgb_sha256: string }[];
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

test('goldens come from Pillow 9.4.0', () => assert.equal(G.pillow, '9.4.0'));

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

test('decoded formats and modes match Pillow Image.open(...).convert("RGB")', async () => {
  const failures: string[] = [];
  for (const c of G.decode) {
    const img = convertToRGB(await decodeImage(Buffer.from(c.base64, 'base64'), c.name));
    assert.deepEqual([img.width, img.height], [c.width, c.height], c.name);
    if (sha256(img.data as Uint8Array) !== c.rgb_sha256) failures.push(`${c.name} (${c.format} ${c.mode})`);
  }
  assert.deepEqual(failures, [], `${failures.length} of ${G.decode.length} decodes differ from Pillow`);
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
