// Image stage vs the Python reference (Pillow 9.4 + transformers 4.40.2 CLIPImageProcessor):
// decoded pixels, the uint8 resize, the uint8 center crop, then the float pixel values.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

import { CLIPImageProcessor, configFromDict, convertToRGB, loadImage, resize, shortestEdgeSize, type RawImage } from '../src/image/index.js';
import { FIXTURES, Goldens } from './helpers/goldens.js';

const FIX = FIXTURES;
const IP = path.join(FIX, 'image_processor');

const goldens = new Goldens(path.join(IP, 'pixel_values.safetensors'));
const index = JSON.parse(fs.readFileSync(path.join(IP, 'pixel_values.json'), 'utf8'));
const images: { file: string; mode: string; width: number; height: number; resized_width: number; resized_height: number; crop_top: number; crop_left: number; decoded_rgb_uint8_hwc?: string; resized_uint8_hwc?: string; center_cropped_uint8_hwc: string; pixel_values: string }[] = index.images;

function golden(name: string): Uint8Array {
  const t = goldens.get(name);
  assert.equal(t.type, 'uint8', name);
  return t.data as Uint8Array;
}
function goldenF32(name: string): Float32Array {
  const t = goldens.get(name);
  assert.equal(t.type, 'float32', name);
  return t.data as Float32Array;
}
function countDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'length');
  let d = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) d++;
  return d;
}
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'length');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const processorP = CLIPImageProcessor.fromPretrained(IP);

test('decoded JPEG pixels equal Pillow/libjpeg-turbo (decoded_rgb)', async () => {
  for (const im of images.filter((i) => i.decoded_rgb_uint8_hwc)) {
    const rgb = convertToRGB(await loadImage(path.join(FIX, im.file)));
    assert.deepEqual([rgb.width, rgb.height, rgb.channels], [im.width, im.height, 3]);
    const d = countDiff(rgb.data, golden(im.decoded_rgb_uint8_hwc!));
    console.log(`decoded_rgb/${path.basename(im.file)}: ${d} differing bytes`);
    assert.equal(d, 0);
  }
});

test('every fixture decodes to its Pillow mode and size (EXIF not applied)', async () => {
  const channelsOfMode: Record<string, number[]> = { RGB: [3], L: [1], RGBA: [4], P: [3, 4] };
  for (const im of images) {
    const img = await loadImage(path.join(FIX, im.file));
    assert.deepEqual([img.width, img.height], [im.width, im.height], im.file);
    assert.ok(channelsOfMode[im.mode].includes(img.channels), `${im.file}: ${img.channels} channels for mode ${im.mode}`);
  }
});

test('shortest-edge size rule int(224 * long / short)', () => {
  for (const im of images) {
    assert.deepEqual(shortestEdgeSize(im.width, im.height, 224), { width: im.resized_width, height: im.resized_height }, im.file);
  }
});

test('full bicubic resize equals PIL Image.resize (resized/*)', async () => {
  for (const im of images.filter((i) => i.resized_uint8_hwc)) {
    const rgb = convertToRGB(await loadImage(path.join(FIX, im.file)));
    const out = resize(rgb, im.resized_width, im.resized_height, 'bicubic');
    const d = countDiff(out.data, golden(im.resized_uint8_hwc!));
    console.log(`resized/${path.basename(im.file)}: ${d} differing bytes`);
    assert.equal(d, 0);
  }
});

test('resizing only the crop window gives the same bytes as resize-then-crop', async () => {
  for (const name of ['cat.jpg', 'gray_portrait.png', 'tiny_7x5.png']) {
    const rgb = convertToRGB(await loadImage(path.join(FIX, 'images', name)));
    for (const filter of ['nearest', 'bilinear', 'bicubic', 'lanczos', 'box', 'hamming'] as const) {
      const [w, h] = [Math.round(rgb.width * 0.61) + 3, Math.round(rgb.height * 1.3)];
      const full = resize(rgb, w, h, filter);
      const region = { left: 2, top: 3, width: w - 5, height: h - 4 };
      const part = resize(rgb, w, h, filter, region);
      const expect = new Uint8Array(region.width * region.height * 3);
      for (let y = 0; y < region.height; y++) {
        const s = ((y + region.top) * w + region.left) * 3;
        expect.set(full.data.subarray(s, s + region.width * 3), y * region.width * 3);
      }
      assert.equal(countDiff(part.data, expect), 0, `${name} ${filter}`);
    }
  }
});

test('uint8 center crop equals the reference for every fixture (center_cropped/*)', async () => {
  const processor = await processorP;
  for (const im of images) {
    const out = await processor.preprocessUint8(path.join(FIX, im.file));
    assert.deepEqual([out.width, out.height, out.channels], [224, 224, 3]);
    const d = countDiff(out.data, golden(im.center_cropped_uint8_hwc));
    console.log(`center_cropped/${path.basename(im.file)}: ${d} differing bytes`);
    assert.equal(d, 0, im.file);
  }
});

test('pixel_values equal the reference for every fixture (max abs diff <= 1e-6)', async () => {
  const processor = await processorP;
  for (const im of images) {
    const { pixelValues } = await processor.preprocess(path.join(FIX, im.file));
    assert.equal(pixelValues.type, 'float32');
    assert.deepEqual(pixelValues.dims, [1, 3, 224, 224]);
    const m = maxAbsDiff(pixelValues.data as Float32Array, goldenF32(im.pixel_values));
    console.log(`pixel_values/${path.basename(im.file)}: max abs diff ${m}`);
    assert.ok(m <= 1e-6, `${im.file}: ${m}`);
  }
});

test('a batch is the concatenation of the single results', async () => {
  const processor = await processorP;
  const names: string[] = index.batch.images;
  const files = names.map((n) => images.find((i) => path.basename(i.file).startsWith(n + '.'))!.file);
  const { pixelValues } = await processor.preprocess(files.map((f) => path.join(FIX, f)));
  assert.deepEqual(pixelValues.dims, [3, 3, 224, 224]);
  const expect = new Float32Array(3 * 3 * 224 * 224);
  names.forEach((n, i) => expect.set(goldenF32(`pixel_values/${n}`), i * 3 * 224 * 224));
  assert.equal(maxAbsDiff(pixelValues.data as Float32Array, expect), 0);
});

test('legacy int-size config loads to the same settings and the same pixels', async () => {
  const dict = JSON.parse(fs.readFileSync(path.join(IP, 'preprocessor_config.json'), 'utf8'));
  const legacy = JSON.parse(fs.readFileSync(path.join(IP, 'preprocessor_config.legacy.json'), 'utf8'));
  assert.deepEqual(configFromDict(legacy), configFromDict(dict));
  assert.deepEqual(configFromDict(dict), {
    doResize: true, size: { shortestEdge: 224 }, resample: 'bicubic', doCenterCrop: true, cropSize: { height: 224, width: 224 },
    doRescale: true, rescaleFactor: 1 / 255, doNormalize: true, imageMean: [0.48145466, 0.4578275, 0.40821073],
    imageStd: [0.26862954, 0.26130258, 0.27577711], doConvertRgb: true,
  });
  // tiny-altclip-b carries the legacy layout.
  const b = await CLIPImageProcessor.fromPretrained(path.join(FIX, 'models', 'tiny-altclip-b'));
  const { pixelValues } = await b.preprocess(path.join(FIX, 'images', 'palette.png'));
  assert.equal(maxAbsDiff(pixelValues.data as Float32Array, goldenF32('pixel_values/palette')), 0);
});

test('every input kind gives the same pixels: path, file URL, URL, bytes, Buffer, raw pixels, http', async () => {
  const processor = await processorP;
  const file = path.join(FIX, 'images', 'cat.jpg');
  const bytes = fs.readFileSync(file);
  const want = goldenF32('pixel_values/cat');
  const raw: RawImage = { data: golden('decoded_rgb/cat'), width: 451, height: 300, channels: 3 };
  const server = http.createServer((req, res) => {
    if (req.url === '/cat.jpg') res.end(bytes);
    else res.writeHead(404).end('missing');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const inputs = [file, pathToFileURL(file).href, pathToFileURL(file), new Uint8Array(bytes), bytes, raw, `${base}/cat.jpg`];
    for (const input of inputs) {
      const { pixelValues } = await processor.preprocess(input);
      assert.equal(maxAbsDiff(pixelValues.data as Float32Array, want), 0, String(input).slice(0, 60));
    }
    await assert.rejects(processor.preprocess(`${base}/nope.jpg`), /nope\.jpg.*HTTP 404/);
  } finally {
    server.close();
  }
  // Gray raw pixels are treated as mode L: the same as the gray PNG.
  const gray = await loadImage(path.join(FIX, 'images', 'gray_portrait.png'));
  assert.equal(gray.channels, 1);
  const { pixelValues } = await processor.preprocess({ ...gray });
  assert.equal(maxAbsDiff(pixelValues.data as Float32Array, goldenF32('pixel_values/gray_portrait')), 0);
});

test('EXIF orientation is ignored by default and applied on request', async () => {
  const file = path.join(FIX, 'images', 'exif_rotated.jpg');
  const stored = golden('decoded_rgb/exif_rotated'); // 240 wide x 160 high
  const rotated = await loadImage(file, { applyExifOrientation: true });
  assert.deepEqual([rotated.width, rotated.height], [160, 240]);
  // Orientation 6: the stored image rotated 90 degrees clockwise.
  let d = 0;
  for (let y = 0; y < 240; y++) {
    for (let x = 0; x < 160; x++) {
      const sy = 160 - 1 - x, sx = y;
      for (let c = 0; c < 3; c++) if (rotated.data[(y * 160 + x) * 3 + c] !== stored[(sy * 240 + sx) * 3 + c]) d++;
    }
  }
  assert.equal(d, 0);
  const processor = await processorP;
  const a = await processor.preprocess(file, { applyExifOrientation: true });
  assert.ok(maxAbsDiff(a.pixelValues.data as Float32Array, goldenF32('pixel_values/exif_rotated')) > 0.5);
});

test('per-call overrides behave like transformers kwargs', async () => {
  const processor = await processorP;
  const file = path.join(FIX, 'images', 'cat.jpg');
  const rgb = convertToRGB(await loadImage(file));
  // size / crop overrides: 280 shortest edge, 160 high x 192 wide crop (the interpolate goldens' inputs)
  const a = await processor.preprocess(file, { size: { shortest_edge: 160 }, cropSize: { height: 160, width: 192 } });
  assert.deepEqual(a.pixelValues.dims, [1, 3, 160, 192]);
  // no normalization, no rescale: the raw uint8 values as floats, equal to the uint8 pipeline
  const b = await processor.preprocess(file, { doRescale: false, doNormalize: false });
  const u8 = golden('center_cropped/cat');
  const chw = b.pixelValues.data as Float32Array;
  let d = 0;
  for (let i = 0; i < 224 * 224; i++) for (let c = 0; c < 3; c++) if (chw[c * 224 * 224 + i] !== u8[i * 3 + c]) d++;
  assert.equal(d, 0);
  // exact size + bilinear, no crop: equals resize() directly
  const c = await processor.preprocess(file, { size: [100, 120], resample: 2, doCenterCrop: false, doNormalize: false, doRescale: false });
  assert.deepEqual(c.pixelValues.dims, [1, 3, 100, 120]);
  const r = resize(rgb, 120, 100, 'bilinear');
  const cd = c.pixelValues.data as Float32Array;
  d = 0;
  for (let i = 0; i < 100 * 120; i++) for (let ch = 0; ch < 3; ch++) if (cd[ch * 100 * 120 + i] !== r.data[i * 3 + ch]) d++;
  assert.equal(d, 0);
  // crop larger than the image: transformers pads with zeros (uint8 0 -> -mean/std)
  const e = await processor.preprocess(path.join(FIX, 'images', 'tiny_7x5.png'), { doResize: false, cropSize: 9 });
  const ed = e.pixelValues.data as Float32Array;
  assert.deepEqual(e.pixelValues.dims, [1, 3, 9, 9]);
  assert.equal(ed[0], Math.fround(Math.fround(0 - Math.fround(0.48145466)) / Math.fround(0.26862954))); // row 0 is padding
  const tiny = await loadImage(path.join(FIX, 'images', 'tiny_7x5.png'));
  // row 2, col 1 of the crop is source pixel (0, 0): top = (5 - 9) // 2 = -2, left = (7 - 9) // 2 = -1
  const v = tiny.data[0];
  assert.equal(ed[2 * 9 + 1], Math.fround(Math.fround(Math.fround(v * (1 / 255)) - Math.fround(0.48145466)) / Math.fround(0.26862954)));
  // doConvertRgb false on a gray image fails, as in Python
  await assert.rejects(processor.preprocess(path.join(FIX, 'images', 'gray_portrait.png'), { doConvertRgb: false }), /gray_portrait.png: image has 1 channels; doConvertRgb/);
  assert.throws(() => configFromDict({ resample: 9 }), /resample/);
  assert.throws(() => configFromDict({ size: { longest: 3 } }), /size/);
});

test('size / crop_size overrides reproduce the interpolate_pos_encoding goldens (280x280, 160x192)', async () => {
  const processor = await processorP;
  const g = new Goldens(path.join(FIX, 'goldens', 'interpolate_pos_encoding.safetensors'));
  const inputs = JSON.parse(fs.readFileSync(path.join(FIX, 'goldens', 'interpolate_pos_encoding.json'), 'utf8')).inputs;
  for (const spec of Object.values(inputs) as { image: string; processor_call: { size: { shortest_edge: number }; crop_size: { height: number; width: number } }; pixel_values: string; shape: number[] }[]) {
    const { pixelValues } = await processor.preprocess(path.join(FIX, spec.image), { size: spec.processor_call.size, cropSize: spec.processor_call.crop_size });
    assert.deepEqual(pixelValues.dims, spec.shape);
    const want = g.get(spec.pixel_values);
    assert.deepEqual(want.dims, spec.shape);
    const m = maxAbsDiff(pixelValues.data as Float32Array, want.data as Float32Array);
    console.log(`${spec.pixel_values}: max abs diff ${m}`);
    assert.equal(m, 0);
  }
});
