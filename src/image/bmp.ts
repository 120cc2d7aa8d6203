// BMP decoding (sharp/libvips has no BMP loader), giving exactly what Pillow 9.4's BmpImagePlugin
// gives: the same header checks (BmpImageFile._bitmap), the same raw modes, the same RLE decoder
// (BmpRleDecoder), and the same refusals. Output channels follow Pillow's mode: "1" and "L" give 1
// channel, "P" (palette colours) and "RGB" 3, "RGBA" 4. Test inputs and goldens:
// test/image_pillow_goldens.py.
import type { RawImage } from './types.js';

// BmpImageFile.COMPRESSIONS
const RAW = 0, RLE8 = 1, RLE4 = 2, BITFIELDS = 3;

/**
 * A raw mode of Unpack.c as BmpImagePlugin picks it: bits per pixel in the file row and how a pixel
 * becomes output samples. 32/24-bit modes give the byte index of each of R, G, B (and A).
 */
type RawMode =
  | { kind: 'bytes'; bits: 24 | 32; r: number; g: number; b: number; a?: number } // BGR, BGRX, XBGR, ABGR, RGBA, BGRA
  | { kind: 'bgr15' | 'bgr16' } // BGR;15 (5-5-5) and BGR;16 (5-6-5), 16 bits little-endian
  | { kind: 'index'; bits: 1 | 4 | 8 } // P;1, P;4, P: palette indices
  | { kind: 'bilevel' } // "1": 1 bit per pixel, 0 -> 0, 1 -> 255
  | { kind: 'gray' }; // "L": 8 bits per pixel, the value as it is

const BGR: RawMode = { kind: 'bytes', bits: 24, r: 2, g: 1, b: 0 };
const BGRX: RawMode = { kind: 'bytes', bits: 32, r: 2, g: 1, b: 0 };

// BmpImagePlugin's SUPPORTED / MASK_MODES for BI_BITFIELDS (32-bit: r, g, b, a masks; 16/24-bit:
// r, g, b), with each raw mode spelled as byte positions of a little-endian pixel.
const MASK_MODES: [bits: number, masks: number[], mode: RawMode][] = [
  [32, [0xff0000, 0xff00, 0xff, 0x0], BGRX],
  [32, [0xff000000, 0xff0000, 0xff00, 0x0], { kind: 'bytes', bits: 32, r: 3, g: 2, b: 1 }], // XBGR
  [32, [0xff000000, 0xff0000, 0xff00, 0xff], { kind: 'bytes', bits: 32, r: 3, g: 2, b: 1, a: 0 }], // ABGR
  [32, [0xff, 0xff00, 0xff0000, 0xff000000], { kind: 'bytes', bits: 32, r: 0, g: 1, b: 2, a: 3 }], // RGBA
  [32, [0xff0000, 0xff00, 0xff, 0xff000000], { kind: 'bytes', bits: 32, r: 2, g: 1, b: 0, a: 3 }], // BGRA
  [32, [0x0, 0x0, 0x0, 0x0], { kind: 'bytes', bits: 32, r: 2, g: 1, b: 0, a: 3 }], // BGRA
  [24, [0xff0000, 0xff00, 0xff], BGR],
  [16, [0xf800, 0x7e0, 0x1f], { kind: 'bgr16' }],
  [16, [0x7c00, 0x3e0, 0x1f], { kind: 'bgr15' }],
];

const rawBits = (m: RawMode): number =>
  m.kind === 'bytes' || m.kind === 'index' ? m.bits : m.kind === 'bilevel' ? 1 : m.kind === 'gray' ? 8 : 16;

/** Width and height as the header declares them (as decodeBmp reads them), or null without a header. */
export function bmpSize(buf: Uint8Array): { width: number; height: number } | null {
  if (buf.length < 26) return null;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerSize = dv.getUint32(14, true);
  if (headerSize === 12) return { width: dv.getUint16(18, true), height: dv.getUint16(20, true) };
  const topDown = buf[25] === 0xff;
  return { width: dv.getUint32(18, true), height: topDown ? 2 ** 32 - dv.getUint32(22, true) : dv.getUint32(22, true) };
}

export function decodeBmp(buf: Uint8Array, name: string, maxPixels: number): RawImage {
  const fail = (why: string): never => {
    throw new Error(`${name}: invalid or unsupported BMP (${why})`);
  };
  if (buf.length < 18) fail('file too short');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let offset = dv.getUint32(10, true);
  const headerSize = dv.getUint32(14, true);
  let width: number, height: number, bits: number, compression: number, colors: number, paletteEntry: number;
  let topDown = false;
  let masks: number[] = [];
  if (headerSize === 12) {
    // OS/2 1.x: unsigned 16-bit size, always bottom-up, 3-byte palette entries
    if (buf.length < 26) fail('truncated header');
    [width, height, bits] = [dv.getUint16(18, true), dv.getUint16(20, true), dv.getUint16(24, true)];
    [compression, colors, paletteEntry] = [RAW, 0, 3];
  } else if ([40, 64, 108, 124].includes(headerSize)) {
    if (buf.length < 14 + headerSize) fail('truncated header');
    // Pillow: y_flip = header_data[7] == 0xFF (the height's top byte), height = 2**32 - height
    topDown = buf[25] === 0xff;
    width = dv.getUint32(18, true);
    height = topDown ? 2 ** 32 - dv.getUint32(22, true) : dv.getUint32(22, true);
    bits = dv.getUint16(28, true);
    compression = dv.getUint32(30, true);
    colors = dv.getUint32(46, true);
    paletteEntry = 4;
    if (compression === BITFIELDS) {
      if (headerSize >= 56) {
        masks = [0, 1, 2, 3].map((i) => dv.getUint32(54 + 4 * i, true)); // inside the header
      } else {
        // 40-byte header: three masks follow it; the 4th (alpha) is taken as 0
        if (buf.length < 66) fail('truncated bitfield masks');
        masks = [0, 1, 2].map((i) => dv.getUint32(54 + 4 * i, true)).concat(0);
      }
    }
  } else {
    return fail(`header size ${headerSize}`);
  }
  if (width === 0 || height === 0) fail(`size ${width}x${height}`);
  if (width * height > maxPixels) {
    fail(`${width}x${height} = ${width * height} pixels exceeds the limit of ${maxPixels} (decompression bomb?)`);
  }
  if (colors === 0) colors = 2 ** bits;
  // Pillow: a pixel offset pointing right after the header of a palette image skips the palette
  if (offset === 14 + headerSize && bits <= 8) offset += 4 * colors;

  // BIT2MODE, then the compression
  let mode: RawMode;
  if (bits === 1 || bits === 4 || bits === 8) mode = { kind: 'index', bits };
  else if (bits === 16) mode = { kind: 'bgr15' };
  else if (bits === 24) mode = BGR;
  else if (bits === 32) mode = BGRX;
  else return fail(`${bits} bits per pixel`);
  const rle = compression === RLE8 || compression === RLE4;
  if (compression === BITFIELDS) {
    const n = bits === 32 ? 4 : 3;
    const found = MASK_MODES.find(([b, m]) => b === bits && m.every((v, i) => v === masks[i]) && m.length === n);
    if (!found) fail(`bitfields layout ${bits}-bit masks ${masks.slice(0, n).map((m) => '0x' + m.toString(16)).join(', ')}: Pillow reads only the common ones`);
    mode = found![2];
  } else if (compression !== RAW && !rle) {
    fail(`compression ${compression}: Pillow reads uncompressed, BI_BITFIELDS, BI_RLE8 and BI_RLE4 only`);
  }

  // The palette, and Pillow's shortcut for gray palettes: entries (i, i, i) for every i make mode
  // "L" (2 entries black, white: mode "1"), read with the raw mode "L" / "1" whatever the bit depth.
  let palette: Uint8Array | null = null;
  if (mode.kind === 'index') {
    if (colors > 256) fail(`${colors} palette entries (at most 256)`); // Pillow: "invalid palette size"
    const start = 14 + headerSize;
    if (start + colors * paletteEntry > buf.length) fail('truncated palette');
    // ImagingPaletteNew starts from a gray ramp: indices past the file's entries show (i, i, i)
    palette = new Uint8Array(256 * 3);
    for (let i = 0; i < 256; i++) palette[i * 3] = palette[i * 3 + 1] = palette[i * 3 + 2] = i;
    let gray = true;
    for (let i = 0; i < colors; i++) {
      const [b, g, r] = [buf[start + i * paletteEntry], buf[start + i * paletteEntry + 1], buf[start + i * paletteEntry + 2]];
      const want = colors === 2 ? [0, 255][i] : i;
      if (r !== want || g !== want || b !== want) gray = false;
      palette.set([r, g, b], i * 3);
    }
    if (gray) {
      if (rle && colors === 2) fail('RLE compression of a black-and-white image (2-entry black/white palette): Pillow has no raw mode for it');
      mode = colors === 2 ? { kind: 'bilevel' } : { kind: 'gray' };
      palette = null;
    }
  } else if (rle) {
    fail(`RLE compression with ${bits} bits per pixel: Pillow has no raw mode for it`);
  }

  const channels = mode.kind === 'bilevel' || mode.kind === 'gray' ? 1 : mode.kind === 'bytes' && mode.a !== undefined ? 4 : 3;
  if (rle) {
    const indices = decodeRle(buf, offset, width, height, compression === RLE4, fail);
    const out = new Uint8Array(width * height * channels);
    // set_as_raw(data, ("P" or "L", 0, direction)): 8-bit rows, bottom-up unless top-down
    for (let y = 0; y < height; y++) {
      const src = (topDown ? y : height - 1 - y) * width;
      if (!palette) {
        out.set(indices.subarray(src, src + width), y * width);
        continue;
      }
      for (let x = 0, o = y * width * 3; x < width; x++, o += 3) {
        const v = indices[src + x] * 3;
        out[o] = palette[v];
        out[o + 1] = palette[v + 1];
        out[o + 2] = palette[v + 2];
      }
    }
    return { data: out, width, height, channels };
  }

  // Raw rows: stride from the file's bit depth, row content in the raw mode's bit depth.
  const stride = Math.floor((width * bits + 31) / 32) * 4;
  const rowBytes = Math.ceil((width * rawBits(mode)) / 8);
  if (stride < rowBytes) fail(`${bits}-bit pixels with a gray palette: Pillow reads them as 8-bit "L" rows, longer than the file's rows`);
  if (offset + stride * (height - 1) + rowBytes > buf.length) fail('truncated pixel data');
  const out = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    const row = offset + (topDown ? y : height - 1 - y) * stride;
    let o = y * width * channels;
    for (let x = 0; x < width; x++, o += channels) {
      switch (mode.kind) {
        case 'index': {
          const bit = x * mode.bits;
          const idx = (buf[row + (bit >> 3)] >> (8 - mode.bits - (bit & 7))) & ((1 << mode.bits) - 1);
          out[o] = palette![idx * 3];
          out[o + 1] = palette![idx * 3 + 1];
          out[o + 2] = palette![idx * 3 + 2];
          break;
        }
        case 'bilevel':
          out[o] = (buf[row + (x >> 3)] >> (7 - (x & 7))) & 1 ? 255 : 0;
          break;
        case 'gray':
          out[o] = buf[row + x];
          break;
        case 'bytes': {
          const p = row + x * (mode.bits / 8);
          out[o] = buf[p + mode.r];
          out[o + 1] = buf[p + mode.g];
          out[o + 2] = buf[p + mode.b];
          if (mode.a !== undefined) out[o + 3] = buf[p + mode.a];
          break;
        }
        default: {
          // Unpack.c ImagingUnpackBGR15 / BGR16: integer scaling v * 255 / 31 (or 63)
          const v = buf[row + x * 2] | (buf[row + x * 2 + 1] << 8);
          if (mode.kind === 'bgr15') {
            out[o] = Math.trunc((((v >> 10) & 31) * 255) / 31);
            out[o + 1] = Math.trunc((((v >> 5) & 31) * 255) / 31);
          } else {
            out[o] = Math.trunc((((v >> 11) & 31) * 255) / 31);
            out[o + 1] = Math.trunc((((v >> 5) & 63) * 255) / 63);
          }
          out[o + 2] = Math.trunc(((v & 31) * 255) / 31);
        }
      }
    }
  }
  return { data: out, width, height, channels };
}

/**
 * Pillow 9.4's BmpRleDecoder.decode, step for step: palette indices in stored row order (the first
 * row is the bottom one unless top-down). Pixels that end-of-line and delta codes skip are index 0;
 * a run is cut at the row end; an absolute run may continue into the next row; data past the last
 * pixel is ignored. Quirks of 9.4 kept on purpose, since they decide the pixels: a delta reads its two
 * bytes and then two more as (right, up); an RLE4 absolute run of n pixels reads n // 2 bytes; word
 * alignment after an absolute run is by the position in the file. Where Pillow ends up with fewer
 * pixels than the image has ("not enough image data": truncated data, end of bitmap early), or
 * cannot read a delta, the file is refused.
 */
function decodeRle(buf: Uint8Array, start: number, width: number, height: number, rle4: boolean, fail: (why: string) => never): Uint8Array {
  const total = width * height;
  // Zero-filled (skipped pixels are index 0) and grown as pixels come, like Pillow's bytearray, so a
  // small file claiming a huge size fails without first taking memory for all of it.
  let data = new Uint8Array(Math.min(total, 1 << 16));
  const grow = (size: number) => {
    const bigger = new Uint8Array(Math.min(total, Math.max(size, data.length * 2)));
    bigger.set(data);
    data = bigger;
  };
  let n = 0; // len(data) in Pillow: the next pixel's index in stored order
  let x = 0; // Pillow's column counter (not always n % width)
  let p = start;
  const push = (v: number) => {
    if (n < total) {
      if (n >= data.length) grow(n + 1);
      data[n] = v;
    }
    n++;
  };
  while (n < total) {
    if (p + 2 > buf.length) break;
    const count = buf[p], byte = buf[p + 1];
    p += 2;
    if (count) {
      // encoded mode: `count` pixels of byte (RLE4: its two nibbles alternating), cut at the row end
      const k = x + count > width ? Math.max(0, width - x) : count;
      for (let i = 0; i < k; i++) push(rle4 ? (i % 2 === 0 ? byte >> 4 : byte & 15) : byte);
      x += k;
    } else if (byte === 0) {
      n = Math.ceil(n / width) * width; // end of line: pad with index 0 to the row boundary
      x = 0;
    } else if (byte === 1) {
      break; // end of bitmap
    } else if (byte === 2) {
      // delta: Pillow 9.4 reads 2 bytes (checked), then reads the next 2 as (right, up)
      if (p + 2 > buf.length) break;
      p += 2;
      if (p + 2 > buf.length) fail('RLE data ends inside a delta');
      n += buf[p] + buf[p + 1] * width;
      p += 2;
      x = n % width;
    } else {
      // absolute mode: `byte` pixels stored as they are (RLE4: byte // 2 bytes, two pixels each)
      const want = rle4 ? byte >> 1 : byte;
      const got = Math.min(want, buf.length - p);
      for (let i = 0; i < got; i++) {
        if (rle4) {
          push(buf[p + i] >> 4);
          push(buf[p + i] & 15);
        } else {
          push(buf[p + i]);
        }
      }
      p += got;
      if (got < want) break;
      x += byte;
      if (p % 2 !== 0) p++; // align to a 16-bit word of the file
    }
  }
  if (n < total) fail(`RLE data ends before the last pixel (${n} of ${total} pixels)`);
  if (data.length < total) grow(total);
  return data;
}
