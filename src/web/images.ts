// Images in the page: decoded by the browser, then resized and normalised by the shared, Pillow-exact
// CLIPImageProcessor. Pixels are read unpremultiplied (through WebGL2 where the page has it), so a
// transparent pixel keeps its hidden colour as Pillow's convert("RGB") does.
import { CLIPImageProcessor, type PreprocessOverrides } from '../image/processor.js';
import type { ImageInput, RawImage } from '../image/types.js';
import type { Tensor } from '../tensor.js';

/** What the page's image functions take: browser images, encoded bytes, raw pixels, or a URL. */
export type WebImageInput = Blob | ImageBitmap | ImageData | HTMLImageElement | HTMLCanvasElement | OffscreenCanvas
  | string | URL | ArrayBuffer | Uint8Array | RawImage;

function isRawImage(x: unknown): x is RawImage {
  return typeof x === 'object' && x !== null && 'data' in x && 'channels' in x && 'width' in x && 'height' in x
    && !(typeof ImageData !== 'undefined' && x instanceof ImageData);
}

/** RGBA pixels of anything drawable, through a 2-D canvas (premultiplied: exact for opaque pixels). */
function drawToRgba(source: CanvasImageSource, width: number, height: number): RawImage {
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true, colorSpace: 'srgb' })!;
  ctx.drawImage(source, 0, 0);
  const { data } = ctx.getImageData(0, 0, width, height, { colorSpace: 'srgb' });
  return { data, width, height, channels: 4 };
}

/**
 * A bitmap's RGBA bytes as decoded, unpremultiplied: uploaded to a WebGL2 texture with
 * UNPACK_PREMULTIPLY_ALPHA false and read back (a 2-D canvas premultiplies, which zeroes the
 * colour of fully transparent pixels; Pillow's convert("RGB") keeps it). Null without WebGL2.
 */
function readUnpremultiplied(bitmap: ImageBitmap): RawImage | null {
  const { width, height } = bitmap;
  const gl = new OffscreenCanvas(1, 1).getContext('webgl2');
  if (!gl) return null;
  try {
    const tex = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, tex);
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
    gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, gl.RGBA, gl.UNSIGNED_BYTE, bitmap);
    const fb = gl.createFramebuffer();
    gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
    gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, tex, 0);
    if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) return null;
    const data = new Uint8Array(width * height * 4);
    // texture row 0 is the image's top row (no UNPACK_FLIP_Y), and readPixels starts at row 0
    gl.readPixels(0, 0, width, height, gl.RGBA, gl.UNSIGNED_BYTE, data);
    gl.deleteFramebuffer(fb);
    gl.deleteTexture(tex);
    return gl.getError() === gl.NO_ERROR ? { data, width, height, channels: 4 } : null;
  } finally {
    gl.getExtension('WEBGL_lose_context')?.loseContext();
  }
}

/**
 * A copy of a JPEG whose EXIF orientation tag (0x0112) says 1 (as stored): browsers rotate by it
 * and cannot be told not to, while CLIPImageProcessor (Pillow's Image.open) ignores it.
 */
export function withoutExifOrientation(jpeg: Uint8Array): Uint8Array {
  const v = new DataView(jpeg.buffer, jpeg.byteOffset, jpeg.byteLength);
  let p = 2;
  while (p + 4 <= jpeg.length && jpeg[p] === 0xff) {
    const marker = jpeg[p + 1]!;
    if (marker === 0xda || marker === 0xd9) break; // start of scan / end of image
    const len = v.getUint16(p + 2);
    // APP1 "Exif\0\0" then a TIFF header: byte order, 42, offset of IFD0
    if (marker === 0xe1 && len >= 16 && v.getUint32(p + 4) === 0x45786966 && v.getUint16(p + 8) === 0) {
      const tiff = p + 10;
      const le = v.getUint16(tiff) === 0x4949;
      const end = Math.min(jpeg.length, p + 2 + len);
      const ifd = tiff + v.getUint32(tiff + 4, le);
      if (ifd + 2 > end) break;
      const count = v.getUint16(ifd, le);
      for (let i = 0; i < count; i++) {
        const entry = ifd + 2 + i * 12;
        if (entry + 12 > end) break;
        if (v.getUint16(entry, le) === 0x0112 && v.getUint16(entry + 8, le) !== 1) {
          const copy = jpeg.slice();
          new DataView(copy.buffer).setUint16(entry + 8, 1, le); // SHORT value, left-justified in the entry
          return copy;
        }
      }
      break;
    }
    p += 2 + len;
  }
  return jpeg;
}

/**
 * Encoded bytes -> RGBA by the browser's decoder, without colour-space conversion (Pillow ignores
 * ICC profiles) and without EXIF rotation (CLIPImageProcessor does not apply it either).
 */
async function decodeBytes(bytes: Uint8Array, type: string, what: string): Promise<RawImage> {
  let bitmap: ImageBitmap;
  if (type === 'image/jpeg') bytes = withoutExifOrientation(bytes);
  try {
    bitmap = await createImageBitmap(new Blob([bytes as BlobPart], { type }),
      { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    throw new Error(`${what}: cannot decode the image (${(e as Error).message})`);
  }
  try {
    return readUnpremultiplied(bitmap) ?? drawToRgba(bitmap, bitmap.width, bitmap.height);
  } finally {
    bitmap.close();
  }
}

/** The MIME type from the first bytes (what the page's decoders need told). */
export function sniffType(b: Uint8Array): string {
  const at = (i: number, ...v: number[]) => v.every((x, k) => b[i + k] === x);
  if (at(0, 0x89, 0x50, 0x4e, 0x47)) return 'image/png';
  if (at(0, 0xff, 0xd8, 0xff)) return 'image/jpeg';
  if (at(0, 0x47, 0x49, 0x46, 0x38)) return 'image/gif';
  if (at(0, 0x52, 0x49, 0x46, 0x46) && at(8, 0x57, 0x45, 0x42, 0x50)) return 'image/webp';
  if (at(0, 0x42, 0x4d)) return 'image/bmp';
  return '';
}

/** Any WebImageInput as RawImage pixels (the shared processor's input). */
export async function toRawImage(input: WebImageInput, what = '<image>'): Promise<RawImage> {
  if (isRawImage(input)) return input;
  if (typeof ImageData !== 'undefined' && input instanceof ImageData) {
    return { data: input.data, width: input.width, height: input.height, channels: 4 };
  }
  if (typeof input === 'string' || input instanceof URL) {
    const url = new URL(String(input), globalThis.location?.href).href;
    const res = await fetch(url);
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
    return toRawImage(await res.blob(), url);
  }
  if (input instanceof ArrayBuffer || input instanceof Uint8Array) {
    const bytes = input instanceof ArrayBuffer ? new Uint8Array(input) : input;
    return decodeBytes(bytes, sniffType(bytes), what);
  }
  if (input instanceof Blob) {
    const bytes = new Uint8Array(await input.arrayBuffer());
    return decodeBytes(bytes, sniffType(bytes) || input.type, what);
  }
  if (typeof HTMLImageElement !== 'undefined' && input instanceof HTMLImageElement) {
    if (!input.complete) await input.decode();
    return drawToRgba(input, input.naturalWidth, input.naturalHeight);
  }
  if (typeof ImageBitmap !== 'undefined' && input instanceof ImageBitmap) {
    return readUnpremultiplied(input) ?? drawToRgba(input, input.width, input.height);
  }
  const drawable = input as HTMLCanvasElement | OffscreenCanvas;
  return drawToRgba(drawable, drawable.width, drawable.height);
}

/** CLIPImageProcessor that also takes the page's images (decoded by the browser first). */
export class WebImageProcessor extends CLIPImageProcessor {
  override async preprocess(images: WebImageInput | WebImageInput[], overrides: PreprocessOverrides = {}): Promise<{ pixelValues: Tensor }> {
    const list = Array.isArray(images) ? images : [images];
    const raw = await Promise.all(list.map((im, i) => toRawImage(im, `image ${i}`)));
    return super.preprocess(raw as ImageInput[], overrides);
  }

  override async preprocessUint8(image: WebImageInput, overrides: PreprocessOverrides = {}): Promise<RawImage> {
    return super.preprocessUint8(await toRawImage(image), overrides);
  }
}
