// Decompression bombs, generated (small files, never committed): images whose decoded size is far
// beyond their encoded size, for test/image-bombs.test.ts, test/server-bombs.test.ts and
// bench/serve.ts. Each is a valid file its decoder accepts (or a header the decoder must refuse).
import * as zlib from 'node:zlib';

function crc32(b: Uint8Array): number {
  let c = -1;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ -1) >>> 0;
}

/** One PNG chunk: length, type, data, CRC-32. */
export function pngChunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  Buffer.from(data).copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

const flatPngs = new Map<string, Buffer>();

/**
 * A flat (all zero) PNG of width x height: RGB (colour type 2) or RGBA (6), 8-bit. The zero rows
 * deflate ~1000:1, so 9400 x 9400 RGB is ~260 KB. Generated once per size.
 */
export function flatPng(width: number, height: number, alpha = false): Buffer {
  const key = `${width}x${height}x${alpha}`;
  let png = flatPngs.get(key);
  if (!png) {
    const channels = alpha ? 4 : 3;
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(width, 0);
    ihdr.writeUInt32BE(height, 4);
    ihdr[8] = 8;
    ihdr[9] = alpha ? 6 : 2;
    // every row: filter byte 0, then zero samples (Buffer.alloc's zero pages are never touched by hand)
    const raw = Buffer.alloc(height * (1 + width * channels));
    png = Buffer.concat([
      Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
      pngChunk('IHDR', ihdr),
      pngChunk('IDAT', zlib.deflateSync(raw, { level: 9 })),
      pngChunk('IEND', new Uint8Array(0)),
    ]);
    flatPngs.set(key, png);
  }
  return png;
}

/** A PNG whose IHDR claims width x height over a small IDAT of `zeros` deflated zero bytes (refused from the header when over the limit). */
export function pngClaiming(width: number, height: number, zeros = 1 << 10): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', zlib.deflateSync(Buffer.alloc(zeros))),
    pngChunk('IEND', new Uint8Array(0)),
  ]);
}

/**
 * An RLE BMP (8-bit BI_RLE8, or 4-bit BI_RLE4) of width x height whose pixels are all skipped by
 * delta escapes: each escape moves up to 255 rows in 6 bytes (Pillow 9.4 reads a delta's 2 bytes and
 * then 2 more as right, up), so 9400 x 9400 takes 37 escapes: ~330 bytes for 88 M pixels. The palette
 * is colour (not a gray ramp), so the image decodes as mode "P" to 3 channels.
 */
export function rleDeltaBmp(width: number, height: number, rle4 = false): Buffer {
  const colors = 16;
  const stream: number[] = [];
  for (let rows = 0; rows < height; rows += 255) stream.push(0, 2, 0, 0, 0, Math.min(255, height - rows));
  stream.push(0, 1); // end of bitmap (never reached: the deltas cover every pixel)
  const offset = 14 + 40 + colors * 4;
  const b = Buffer.alloc(offset + stream.length);
  b.write('BM', 0, 'latin1');
  b.writeUInt32LE(b.length, 2);
  b.writeUInt32LE(offset, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(width, 18);
  b.writeInt32LE(height, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(rle4 ? 4 : 8, 28);
  b.writeUInt32LE(rle4 ? 2 : 1, 30); // BI_RLE4 / BI_RLE8
  b.writeUInt32LE(colors, 46);
  for (let i = 0; i < colors; i++) b.writeUInt32LE(0x102030 + i * 0x010305, 54 + 4 * i);
  Buffer.from(stream).copy(b, offset);
  return b;
}

/** A 24-bit uncompressed BMP header claiming width x height with no pixel data (truncated). */
export function rawBmpClaiming(width: number, height: number): Buffer {
  const b = Buffer.alloc(54);
  b.write('BM', 0, 'latin1');
  b.writeUInt32LE(54, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(width, 18);
  b.writeInt32LE(height, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(24, 28);
  return b;
}

export const dataUri = (bytes: Uint8Array, type: string) => `data:${type};base64,${Buffer.from(bytes).toString('base64')}`;
