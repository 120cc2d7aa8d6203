// Bad image input: every case is a clear error naming the file, quickly, without a memory blow-up.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { CLIPImageProcessor, loadImage } from '../src/image/index.js';
import { pngClaiming as bombPngClaiming } from './helpers/bombs.js';

const FIX = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-image-bad-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, data: Uint8Array | string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, data);
  return file;
}

/** A valid-looking RGB PNG whose IHDR claims width x height, with a small IDAT. */
const pngClaiming = (width: number, height: number) => bombPngClaiming(width, height, 1 << 16);

async function expectError(input: string | Uint8Array, pattern: RegExp, options = {}): Promise<void> {
  const rssBefore = process.memoryUsage().rss;
  const t0 = performance.now();
  await assert.rejects(loadImage(input, options), (e: Error) => {
    if (typeof input === 'string') assert.ok(e.message.includes(input), `message names the file: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
  const ms = performance.now() - t0;
  const grewMB = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
  assert.ok(ms < 5000, `took ${ms} ms`);
  assert.ok(grewMB < 200, `memory grew by ${grewMB} MB`);
}

test('empty file', async () => {
  await expectError(write('empty.jpg', ''), /empty file/);
  await expectError(new Uint8Array(0), /<image bytes>: empty file/);
});

test('truncated JPEG', async () => {
  const jpg = fs.readFileSync(path.join(FIX, 'images', 'cat.jpg'));
  await expectError(write('truncated.jpg', jpg.subarray(0, jpg.length >> 1)), /cannot decode JPEG image/);
  await expectError(write('header_only.jpg', jpg.subarray(0, 200)), /cannot decode JPEG image/);
});

test('truncated PNG and corrupt PNG data', async () => {
  const png = fs.readFileSync(path.join(FIX, 'images', 'coffee.png'));
  await expectError(write('truncated.png', png.subarray(0, png.length >> 1)), /cannot decode PNG image/);
  const corrupt = Buffer.from(png);
  for (let i = 200; i < corrupt.length - 100; i += 97) corrupt[i] ^= 0x5a;
  await expectError(write('corrupt.png', corrupt), /cannot decode PNG image/);
});

test('a text file renamed .png', async () => {
  await expectError(write('notes.png', 'just some text, not an image\n'), /not a recognised image/);
});

test('decompression bomb: PNG header claiming 50000 x 50000', async () => {
  await expectError(write('bomb.png', pngClaiming(50000, 50000)), /50000x50000.*exceeds the limit/);
  // the limit is configurable, and applies before decoding
  await expectError(write('medium.png', pngClaiming(3000, 2000)), /exceeds the limit of 1000000/, { maxPixels: 1_000_000 });
});

test('BMP header claiming a huge size, and a truncated BMP', async () => {
  const bmp = Buffer.alloc(54);
  bmp.write('BM', 0, 'latin1');
  bmp.writeUInt32LE(54, 10);
  bmp.writeUInt32LE(40, 14);
  bmp.writeInt32LE(60000, 18);
  bmp.writeInt32LE(60000, 22);
  bmp.writeUInt16LE(1, 26);
  bmp.writeUInt16LE(24, 28);
  await expectError(write('bomb.bmp', bmp), /exceeds the limit/);
  bmp.writeInt32LE(100, 18);
  bmp.writeInt32LE(100, 22);
  await expectError(write('short.bmp', bmp), /truncated pixel data/);
});

test('RLE BMP claiming 9000 x 9000 pixels with a few bytes of data: refused without taking the memory', async () => {
  const head = Buffer.alloc(54 + 1024);
  head.write('BM', 0, 'latin1');
  head.writeUInt32LE(54 + 1024, 10);
  head.writeUInt32LE(40, 14);
  head.writeInt32LE(9000, 18);
  head.writeInt32LE(9000, 22);
  head.writeUInt16LE(1, 26);
  head.writeUInt16LE(8, 28);
  head.writeUInt32LE(1, 30); // BI_RLE8
  for (let i = 0; i < 256; i++) head.writeUInt32LE(i * 0x010203, 54 + 4 * i);
  const stream = Buffer.from([255, 7, 255, 9, 0, 0, 3, 4, 0, 1]); // two runs, end of line, a run, end of bitmap
  const file = write('rle_bomb.bmp', Buffer.concat([head, stream]));
  // rss misses zero-filled buffers that are never written; arrayBuffers counts every allocation
  const before = process.memoryUsage().arrayBuffers;
  let peak = 0;
  await assert.rejects(loadImage(file).finally(() => (peak = process.memoryUsage().arrayBuffers - before)));
  assert.ok(peak < 16 * 2 ** 20, `${(peak / 2 ** 20).toFixed(0)} MB of buffers for a 1 KB file`);
  await expectError(file, /RLE data ends before the last pixel \(9003 of 81000000 pixels\)/);
});

test('unsupported formats', async () => {
  await expectError(write('drawing.svg', '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'), /unsupported image format SVG/);
  await expectError(write('scan.tif', Buffer.from('II*\0\x08\0\0\0\0\0', 'latin1')), /unsupported image format TIFF/);
  await expectError(write('photo.avif', Buffer.from('\0\0\0\x1cftypavif\0\0\0\0', 'latin1')), /unsupported image format HEIF/);
});

test('missing file, directory, bad raw pixels', async () => {
  await expectError(path.join(dir, 'does-not-exist.jpg'), /no such file/);
  await expectError(dir, /is a directory/);
  await assert.rejects(loadImage({ data: new Uint8Array(10), width: 4, height: 4, channels: 3 }), /expected 4x4x3 = 48/);
  await assert.rejects(loadImage({ data: new Uint8Array(16), width: 4, height: 4, channels: 5 as 3 }), /channels must be/);
});

test('the processor reports which file of a batch failed', async () => {
  const processor = await CLIPImageProcessor.fromPretrained(path.join(FIX, 'image_processor'));
  const bad = write('batch-bad.png', 'not an image');
  await assert.rejects(processor.preprocess([path.join(FIX, 'images', 'cat.jpg'), bad]), new RegExp(`${bad}: not a recognised image`));
  await assert.rejects(CLIPImageProcessor.fromPretrained(dir), /preprocessor_config\.json/);
  const cfgDir = path.join(dir, 'badcfg');
  fs.mkdirSync(cfgDir);
  fs.writeFileSync(path.join(cfgDir, 'preprocessor_config.json'), '{"size": {"shortest_edge": 224}, "image_mean": [1, 2]}');
  await assert.rejects(CLIPImageProcessor.fromPretrained(cfgDir), /preprocessor_config\.json: image_mean must be/);
  fs.writeFileSync(path.join(cfgDir, 'preprocessor_config.json'), '{"size": 22');
  await assert.rejects(CLIPImageProcessor.fromPretrained(cfgDir), /preprocessor_config\.json: cannot read/);
});
