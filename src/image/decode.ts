// Image loading: any ImageInput -> 8-bit pixels whose Image.convert("RGB") (convertToRGB in
// processor.ts) is Pillow 9.4's: gray modes ("1", "L", "I", "LA") as 1 or 2 channels (gray, alpha),
// colour modes ("RGB", "RGBA", "P", "CMYK") as 3 or 4 (RGB, alpha). The alpha channel, when there is
// one, is never used for RGB (convert("RGB") drops it).
//
// Decoding is sharp (libvips: libjpeg-turbo/mozjpeg, libspng, libwebp, libnsgif) plus bmp.ts.
// What Pillow does and sharp would not do by default:
// - no colour management: the stored values are returned (sharp would apply an embedded ICC
//   profile; `ignoreIcc`),
// - EXIF orientation is not applied (CLIPImageProcessor uses the pixels as stored); opt-in,
// - 16-bit PNG: Pillow keeps the most significant byte ("RGB;16B", "LA;16B"), except 16-bit
//   grayscale (colour type 0), which opens as mode "I" and whose convert("RGB") clips to 0..255
//   (i2rgb) — also with a tRNS chunk, which Pillow keeps as info["transparency"] while libspng adds
//   an alpha channel: only the IHDR colour type tells it from gray + alpha (colour type 4),
// - palette PNG: an index past the PLTE entries shows Pillow's gray ramp (i, i, i), not black,
// - CMYK JPEG: Pillow's naive cmyk2rgb, no profile,
// - GIF transparency: the transparent index keeps its palette colour (mode P).
import * as fs from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import sharp, { type Sharp } from 'sharp';
import { crc32 } from '../weights/zip.js';
import { bmpSize, decodeBmp } from './bmp.js';
import type { ImageInput, RawImage } from './types.js';

export interface ImageDecodeOptions {
  /** Rotate/flip by the EXIF Orientation tag (default false: pixels as stored, like the reference). */
  applyExifOrientation?: boolean;
  /**
   * Refuse images with more pixels than this, from the header, before decoding (default
   * 89,478,485 = Pillow's Image.MAX_IMAGE_PIXELS: about 270 MB of RGB).
   */
  maxPixels?: number;
  /**
   * Leave out the alpha channel of 8-bit PNG / WebP / JPEG while decoding (what convert("RGB") does
   * next anyway: the processor asks for it when it converts to RGB), instead of decoding it and
   * copying the colour channels out after: an RGBA image then takes 3 bytes a pixel, not 4 + 3.
   */
  dropAlpha?: boolean;
}

export const DEFAULT_MAX_PIXELS = 89_478_485;

type Format = 'JPEG' | 'PNG' | 'GIF' | 'WebP' | 'BMP';

const ascii = (b: Uint8Array, start: number, s: string) =>
  b.length >= start + s.length && [...s].every((c, i) => b[start + i] === c.charCodeAt(0));

/** The format from the magic bytes (file names and extensions are not trusted). */
function sniff(b: Uint8Array): Format | { unsupported: string } | null {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'JPEG';
  if (ascii(b, 0, '\x89PNG\r\n\x1a\n')) return 'PNG';
  if (ascii(b, 0, 'GIF87a') || ascii(b, 0, 'GIF89a')) return 'GIF';
  if (ascii(b, 0, 'RIFF') && ascii(b, 8, 'WEBP')) return 'WebP';
  if (ascii(b, 0, 'BM')) return 'BMP';
  if (ascii(b, 0, 'II*\0') || ascii(b, 0, 'MM\0*')) return { unsupported: 'TIFF' };
  if (ascii(b, 4, 'ftyp')) return { unsupported: 'HEIF/AVIF/MP4 (ISO media)' };
  if (ascii(b, 0, '%PDF')) return { unsupported: 'PDF' };
  if (ascii(b, 0, '\0\0\0\x0cjP  ') || ascii(b, 0, '\xff\x4f\xff\x51')) return { unsupported: 'JPEG 2000' };
  const head = Buffer.from(b.subarray(0, 256)).toString('latin1').trimStart().toLowerCase();
  if (head.startsWith('<svg') || (head.startsWith('<?xml') && head.includes('<svg'))) return { unsupported: 'SVG' };
  return null;
}

const SUPPORTED = 'JPEG, PNG, WebP, GIF, BMP';

/** Decode encoded image bytes; `name` (a path, URL or "<bytes>") is used in error messages. */
export async function decodeImage(bytes: Uint8Array, name: string, options: ImageDecodeOptions = {}): Promise<RawImage> {
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (bytes.length === 0) throw new Error(`${name}: empty file, not an image`);
  const format = sniff(bytes);
  if (format === null) throw new Error(`${name}: not a recognised image (supported formats: ${SUPPORTED})`);
  if (typeof format === 'object') throw new Error(`${name}: unsupported image format ${format.unsupported} (supported: ${SUPPORTED})`);
  if (format === 'BMP') return decodeBmp(bytes, name, maxPixels);
  if (format === 'PNG') bytes = withFullPalette(bytes);

  const open = (headerOnly = false) =>
    sharp(bytes, {
      ignoreIcc: true,
      autoOrient: options.applyExifOrientation ?? false,
      // metadata() reads the header only; our own check below names the size. Decoding keeps
      // sharp's check as a second guard.
      limitInputPixels: headerOnly ? false : maxPixels,
      failOn: 'warning', // truncated or corrupt data is an error, as in Pillow (LOAD_TRUNCATED_IMAGES off)
      pages: 1, // first frame only (GIF, animated WebP)
      sequentialRead: true,
    });
  try {
    const header = headerInfo(bytes, format) ?? (await metadataInfo(open(true)));
    if (header.width * header.height > maxPixels) {
      throw new Error(`${header.width}x${header.height} = ${header.width * header.height} pixels exceeds the limit of ${maxPixels} (decompression bomb?)`);
    }
    const gray = header.gray;
    if (header.depth16) return await decode16(open(), gray, header.modeI);
    if (header.cmyk) return await decodeCmyk(open());
    let pipeline = gray ? open().toColourspace('b-w') : open();
    // (GIF keeps its alpha: it marks the pixels whose palette colour fillGifTransparency restores)
    if (options.dropAlpha && format !== 'GIF') pipeline = pipeline.removeAlpha();
    const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
    const image: RawImage = { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height, channels: info.channels };
    if (format === 'GIF' && image.channels === 4) fillGifTransparency(image, bytes);
    return image;
  } catch (e) {
    throw new Error(`${name}: cannot decode ${format} image: ${(e as Error).message}`);
  }
}

/**
 * Width and height as an encoded image's header declares them, read without decoding (what decoding
 * it would take; the server's pixel budget counts these). Null when no size can be read: decoding
 * such bytes fails.
 */
export async function declaredSize(bytes: Uint8Array): Promise<{ width: number; height: number } | null> {
  const format = sniff(bytes);
  if (format === null || typeof format === 'object') return null;
  if (format === 'BMP') return bmpSize(bytes);
  const header = headerInfo(bytes, format);
  if (header) return { width: header.width, height: header.height };
  try {
    // sharp's header read, on its own threads (GIF, WebP, CMYK or 12-bit JPEG)
    const meta = await sharp(bytes, { limitInputPixels: false, pages: 1 }).metadata();
    return meta.width && meta.height ? { width: meta.width, height: meta.height } : null;
  } catch {
    return null;
  }
}

interface HeaderInfo {
  width: number;
  height: number;
  gray: boolean;
  depth16: boolean;
  /** 16-bit gray without an alpha channel in the file: Pillow's mode "I" (PNG colour type 0). */
  modeI: boolean;
  cmyk: boolean;
}

/**
 * Size and sample layout from a JPEG SOF or PNG IHDR (saves sharp's metadata() pass, ~5% of a
 * decode); null for other formats or anything unusual, which then go through metadata().
 */
function headerInfo(b: Uint8Array, format: Format): HeaderInfo | null {
  if (format === 'PNG') {
    if (b.length < 33 || !ascii(b, 12, 'IHDR')) return null;
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const [depth, colorType] = [b[24], b[25]];
    return {
      width: dv.getUint32(16),
      height: dv.getUint32(20),
      gray: colorType === 0 || colorType === 4,
      depth16: depth === 16,
      modeI: depth === 16 && colorType === 0,
      cmyk: false,
    };
  }
  if (format === 'JPEG') {
    let p = 2;
    while (p + 9 < b.length) {
      if (b[p] !== 0xff) return null;
      const m = b[p + 1];
      if (m === 0xff) {
        p++; // fill byte
        continue;
      }
      if (m === 0x01 || (m >= 0xd0 && m <= 0xd7)) {
        p += 2;
        continue;
      }
      const len = (b[p + 2] << 8) | b[p + 3];
      if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) {
        const [precision, components] = [b[p + 4], b[p + 9]];
        if (precision !== 8 || ![1, 3].includes(components)) return null; // 12-bit, CMYK/YCCK: ask sharp
        return { height: (b[p + 5] << 8) | b[p + 6], width: (b[p + 7] << 8) | b[p + 8], gray: components === 1, depth16: false, modeI: false, cmyk: false };
      }
      p += 2 + len;
    }
  }
  return null;
}

/**
 * A palette PNG whose PLTE has fewer than 2^depth entries (or none) gets them completed with
 * (i, i, i): Pillow's palette starts as that gray ramp (ImagingPaletteNew) and PLTE overwrites the
 * first entries, so an index past PLTE shows gray i, where libspng gives black. Other files are
 * returned as they are.
 */
function withFullPalette(b: Uint8Array): Uint8Array {
  if (b.length < 33 || !ascii(b, 12, 'IHDR') || b[25] !== 3 || b[24] > 8) return b;
  const entries = 1 << b[24];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = 8;
  let plte: { start: number; end: number; n: number } | null = null;
  let firstIdat = -1;
  while (p + 12 <= b.length) {
    const len = dv.getUint32(p);
    if (p + 12 + len > b.length) return b; // truncated: let the decoder report it
    if (ascii(b, p + 4, 'PLTE')) plte = { start: p, end: p + 12 + len, n: Math.floor(len / 3) };
    if (ascii(b, p + 4, 'IDAT')) {
      firstIdat = p;
      break;
    }
    p += 12 + len;
  }
  if (firstIdat < 0 || (plte && plte.n >= entries)) return b;
  const data = new Uint8Array(entries * 3);
  if (plte) data.set(b.subarray(plte.start + 8, plte.start + 8 + plte.n * 3));
  for (let i = plte?.n ?? 0; i < entries; i++) data[i * 3] = data[i * 3 + 1] = data[i * 3 + 2] = i;
  const chunk = new Uint8Array(12 + data.length);
  const cv = new DataView(chunk.buffer);
  cv.setUint32(0, data.length);
  chunk.set([0x50, 0x4c, 0x54, 0x45], 4); // "PLTE"
  chunk.set(data, 8);
  cv.setUint32(8 + data.length, crc32(chunk.subarray(4, 8 + data.length)));
  // PLTE goes where it was, or (absent) right before the first IDAT
  const [cut, resume] = plte ? [plte.start, plte.end] : [firstIdat, firstIdat];
  return Buffer.concat([b.subarray(0, cut), chunk, b.subarray(resume)]);
}

async function metadataInfo(img: Sharp): Promise<HeaderInfo> {
  const meta = await img.metadata();
  if (!meta.width || !meta.height) throw new Error('no image size in the header');
  return {
    width: meta.width,
    height: meta.height,
    gray: meta.space === 'b-w' || meta.space === 'grey16',
    depth16: meta.depth === 'ushort',
    modeI: meta.space === 'grey16' && meta.channels === 1,
    cmyk: meta.space === 'cmyk',
  };
}

async function decode16(img: Sharp, gray: boolean, modeI: boolean): Promise<RawImage> {
  const { data, info } = await img.toColourspace(gray ? 'grey16' : 'rgb16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
  const src = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
  const n = info.width * info.height;
  if (modeI) {
    // mode "I" -> convert("RGB") is i2rgb: clip to 0..255. A tRNS alpha added by the codec is
    // dropped (convert("RGB") drops transparency anyway).
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const v = src[i * info.channels];
      out[i] = v > 255 ? 255 : v;
    }
    return { data: out, width: info.width, height: info.height, channels: 1 };
  }
  const out = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] >> 8; // "RGB;16B", "LA;16B", "RGBA;16B": high byte
  return { data: out, width: info.width, height: info.height, channels: info.channels };
}

async function decodeCmyk(img: Sharp): Promise<RawImage> {
  // Keep the stored CMYK values (sharp would otherwise go through sRGB and back).
  const { data, info } = await img.pipelineColourspace('cmyk').toColourspace('cmyk').raw().toBuffer({ resolveWithObject: true });
  const n = info.width * info.height;
  const out = new Uint8Array(n * 3);
  // Convert.c cmyk2rgb: nk = 255 - k; out = nk - MULDIV255(c, nk).
  const muldiv255 = (a: number, b: number) => {
    const t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  for (let i = 0; i < n; i++) {
    const nk = 255 - data[i * 4 + 3];
    for (let c = 0; c < 3; c++) out[i * 3 + c] = Math.max(0, nk - muldiv255(data[i * 4 + c], nk));
  }
  return { data: out, width: info.width, height: info.height, channels: 3 };
}

/**
 * Pillow opens a GIF as mode P: a transparent pixel keeps the palette colour of the transparent
 * index, which convert("RGB") shows. libnsgif gives such pixels as (0, 0, 0, 0): put that colour
 * back, read from the first frame's colour table and Graphic Control Extension.
 */
function fillGifTransparency(image: RawImage, gif: Uint8Array): void {
  const colour = gifTransparentColour(gif);
  if (!colour) return;
  const d = image.data;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] === 0) {
      d[i] = colour[0];
      d[i + 1] = colour[1];
      d[i + 2] = colour[2];
    }
  }
}

function gifTransparentColour(b: Uint8Array): [number, number, number] | null {
  let p = 13;
  let table: [number, number] | null = null; // [offset, entries]
  if (b.length < 13) return null;
  if (b[10] & 0x80) {
    table = [p, 2 << (b[10] & 7)];
    p += table[1] * 3;
  }
  let transparent = -1;
  const skipSubBlocks = () => {
    while (p < b.length && b[p] !== 0) p += b[p] + 1;
    p++;
  };
  while (p < b.length) {
    if (b[p] === 0x21) {
      if (b[p + 1] === 0xf9 && b[p + 2] >= 4) transparent = b[p + 3] & 1 ? b[p + 6] : -1;
      p += 2;
      skipSubBlocks();
    } else if (b[p] === 0x2c) {
      const flags = b[p + 9];
      if (flags & 0x80) table = [p + 10, 2 << (flags & 7)];
      break;
    } else {
      return null;
    }
  }
  if (transparent < 0) return null;
  if (!table || transparent >= table[1]) return [0, 0, 0];
  const o = table[0] + transparent * 3;
  return [b[o], b[o + 1], b[o + 2]];
}

function isRawImage(x: unknown): x is RawImage {
  return typeof x === 'object' && x !== null && !(x instanceof Uint8Array) && !(x instanceof URL) && 'data' in x && 'width' in x;
}

function checkRaw(img: RawImage): RawImage {
  const { width, height, channels, data } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new Error(`raw image: invalid size ${width}x${height}`);
  }
  if (![1, 2, 3, 4].includes(channels)) throw new Error(`raw image: channels must be 1, 2, 3 or 4 (got ${channels})`);
  if (!(data instanceof Uint8Array || data instanceof Uint8ClampedArray)) throw new Error('raw image: data must be a Uint8Array (8-bit samples)');
  if (data.length !== width * height * channels) {
    throw new Error(`raw image: data has ${data.length} bytes, expected ${width}x${height}x${channels} = ${width * height * channels}`);
  }
  return img;
}

async function readFile(file: string): Promise<Uint8Array> {
  try {
    return await fs.readFile(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory' : err.message;
    throw new Error(`${file}: cannot read image: ${why}`);
  }
}

const DOWNLOAD_TIMEOUT_MS = 60_000;

async function fetchBytes(url: string): Promise<Uint8Array> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS) });
    if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`);
    return new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    const err = e as Error;
    const why = err.name === 'TimeoutError' ? `no complete answer within ${DOWNLOAD_TIMEOUT_MS / 1000} s` : err.message;
    throw new Error(`${url}: cannot download image: ${why}`);
  }
}

/** Any ImageInput -> decoded pixels (channels as Pillow's mode: L, LA, RGB or RGBA). */
export async function loadImage(input: ImageInput, options: ImageDecodeOptions = {}): Promise<RawImage> {
  if (isRawImage(input)) return checkRaw(input);
  if (input instanceof Uint8Array) return decodeImage(input, '<image bytes>', options);
  const url = input instanceof URL ? input : /^(https?|file):\/\//i.test(input) ? new URL(input) : null;
  if (url === null) return decodeImage(await readFile(input as string), input as string, options);
  if (url.protocol === 'file:') {
    const file = fileURLToPath(url);
    return decodeImage(await readFile(file), file, options);
  }
  if (url.protocol === 'http:' || url.protocol === 'https:') return decodeImage(await fetchBytes(url.href), url.href, options);
  throw new Error(`${url.href}: unsupported URL scheme ${url.protocol}`);
}
