// Uncompressed BMP decoding (sharp/libvips has no BMP loader), giving what Pillow 9.4's
// BmpImagePlugin gives: 1/4/8-bit palette images as their palette colours, 24-bit as RGB, 32-bit
// BI_RGB as RGB (the 4th byte is padding, Pillow's "BGRX"), 16-bit as 5-5-5 (or its bitfields),
// 32-bit BI_BITFIELDS with an alpha mask (V4/V5 headers) as RGBA. RLE compression is rejected.
import type { RawImage } from './types.js';

export function decodeBmp(buf: Uint8Array, name: string, maxPixels: number): RawImage {
  const fail = (why: string): never => {
    throw new Error(`${name}: invalid or unsupported BMP (${why})`);
  };
  if (buf.length < 26) fail('file too short');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const pixelOffset = dv.getUint32(10, true);
  const headerSize = dv.getUint32(14, true);
  let width: number, height: number, bpp: number, compression = 0, colorsUsed = 0;
  if (headerSize === 12) {
    width = dv.getUint16(18, true);
    height = dv.getInt16(20, true);
    bpp = dv.getUint16(24, true);
  } else if (headerSize >= 40 && buf.length >= 14 + 40) {
    width = dv.getInt32(18, true);
    height = dv.getInt32(22, true);
    bpp = dv.getUint16(28, true);
    compression = dv.getUint32(30, true);
    colorsUsed = dv.getUint32(46, true);
  } else {
    return fail(`header size ${headerSize}`);
  }
  const topDown = height < 0;
  height = Math.abs(height);
  if (width <= 0 || height <= 0) fail(`size ${width}x${height}`);
  if (width * height > maxPixels) {
    fail(`${width}x${height} = ${width * height} pixels exceeds the limit of ${maxPixels} (decompression bomb?)`);
  }
  // BI_RGB = 0, BI_BITFIELDS = 3 (masks after a 40-byte header, or inside V4/V5 headers).
  let masks: number[] | null = null;
  if (compression === 3 && (bpp === 32 || bpp === 16)) {
    if (buf.length < 14 + 40 + 12) fail('truncated bitfield masks');
    masks = [dv.getUint32(54, true), dv.getUint32(58, true), dv.getUint32(62, true)];
    masks.push(headerSize >= 56 ? dv.getUint32(66, true) : 0);
  } else if (compression === 0 && bpp === 16) {
    masks = [0x7c00, 0x3e0, 0x1f, 0]; // Pillow's "BGR;15"
  } else if (compression !== 0) {
    fail(`compression ${compression} (only uncompressed BMP is supported)`);
  }
  if (![1, 4, 8, 16, 24, 32].includes(bpp)) fail(`${bpp} bits per pixel`);

  const stride = Math.ceil((width * bpp) / 32) * 4;
  if (pixelOffset + stride * (height - 1) + Math.ceil((width * bpp) / 8) > buf.length) fail('truncated pixel data');

  let palette: Uint8Array | null = null;
  if (bpp <= 8) {
    const entry = headerSize === 12 ? 3 : 4;
    const n = colorsUsed || 1 << bpp;
    const start = 14 + headerSize;
    if (start + n * entry > buf.length) fail('truncated palette');
    palette = new Uint8Array(256 * 3); // indices past the palette give black, as in Pillow
    for (let i = 0; i < Math.min(n, 256); i++) {
      palette[i * 3] = buf[start + i * entry + 2];
      palette[i * 3 + 1] = buf[start + i * entry + 1];
      palette[i * 3 + 2] = buf[start + i * entry];
    }
  }
  const hasAlpha = masks !== null && masks[3] !== 0;
  const channels = hasAlpha ? 4 : 3;
  const out = new Uint8Array(width * height * channels);
  const field = (v: number, mask: number) => {
    if (!mask) return 0;
    const shift = 31 - Math.clz32(mask & -mask);
    const bits = 32 - Math.clz32(mask >>> shift);
    const x = (v & mask) >>> shift;
    // Unpack.c scales 5/6-bit fields with integer division: v * 255 / 31.
    return bits >= 8 ? x >>> (bits - 8) : Math.floor((x * 255) / ((1 << bits) - 1));
  };
  for (let y = 0; y < height; y++) {
    const row = pixelOffset + (topDown ? y : height - 1 - y) * stride;
    let o = y * width * channels;
    for (let x = 0; x < width; x++, o += channels) {
      if (palette) {
        const bit = x * bpp;
        const idx = (buf[row + (bit >> 3)] >> (8 - bpp - (bit & 7))) & ((1 << bpp) - 1);
        out[o] = palette[idx * 3];
        out[o + 1] = palette[idx * 3 + 1];
        out[o + 2] = palette[idx * 3 + 2];
      } else if (masks) {
        const p = row + x * (bpp / 8);
        const v = bpp === 32 ? dv.getUint32(p, true) : dv.getUint16(p, true);
        for (let c = 0; c < channels; c++) out[o + c] = field(v, masks[c]);
      } else {
        const p = row + x * (bpp / 8);
        out[o] = buf[p + 2];
        out[o + 1] = buf[p + 1];
        out[o + 2] = buf[p];
      }
    }
  }
  return { data: out, width, height, channels };
}
