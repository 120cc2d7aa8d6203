// CLIPImageProcessor of transformers 4.40.2 (models/clip/image_processing_clip.py), on Pillow-exact
// pixels: convert_to_rgb -> resize (PIL) -> center_crop -> rescale -> normalize -> CHW.
import * as fs from 'node:fs/promises';
import { resolveFile, type PretrainedOptions } from '../hub/index.js';
import { Tensor } from '../tensor.js';
import type { ImageDecodeOptions } from './decode.js';
import { decodeThreads, prepareImage, TransformError } from './pool.js';
import { PIL_RESAMPLE, type Resample } from './resample.js';
import type { ImageInput, RawImage } from './types.js';

export type SizeDict = { shortestEdge: number } | { height: number; width: number };

export interface ImageProcessorConfig {
  doResize: boolean;
  size: SizeDict;
  resample: Resample;
  doCenterCrop: boolean;
  cropSize: { height: number; width: number };
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
  doConvertRgb: boolean;
}

/** Per-call overrides (transformers' preprocess kwargs), plus decoding options. */
export interface PreprocessOverrides extends ImageDecodeOptions {
  doResize?: boolean;
  /** A number means shortest edge; [h, w] or {height, width} an exact size. */
  size?: number | [number, number] | SizeDict | { shortest_edge: number };
  /** PIL.Image.Resampling value (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming) or name. */
  resample?: number | Resample;
  doCenterCrop?: boolean;
  /** A number means a square crop. */
  cropSize?: number | [number, number] | { height: number; width: number };
  doRescale?: boolean;
  rescaleFactor?: number;
  doNormalize?: boolean;
  imageMean?: number | number[];
  imageStd?: number | number[];
  doConvertRgb?: boolean;
}

// OPENAI_CLIP_MEAN / OPENAI_CLIP_STD (transformers/utils/constants.py): CLIPImageProcessor defaults.
const CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

const isPosInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;

/** get_size_dict (image_processing_utils.py): int / (h, w) / dict -> a size dict. */
function sizeDict(value: unknown, defaultToSquare: boolean, what: string): SizeDict {
  if (isPosInt(value)) return defaultToSquare ? { height: value, width: value } : { shortestEdge: value };
  if (Array.isArray(value) && value.length === 2 && value.every(isPosInt)) return { height: value[0], width: value[1] };
  if (typeof value === 'object' && value !== null) {
    const v = value as Record<string, unknown>;
    const se = v.shortest_edge ?? v.shortestEdge;
    if (isPosInt(v.height) && isPosInt(v.width)) return { height: v.height, width: v.width };
    if (isPosInt(se)) return { shortestEdge: se };
  }
  throw new Error(`${what} must be a positive integer, [height, width], {height, width} or {shortest_edge} (got ${JSON.stringify(value)})`);
}

function cropDict(value: unknown, what: string): { height: number; width: number } {
  const s = sizeDict(value, true, what);
  if (!('height' in s)) throw new Error(`${what} must give a height and a width (got ${JSON.stringify(value)})`);
  return s;
}

function resampleOf(value: unknown): Resample {
  if (typeof value === 'number' && PIL_RESAMPLE[value]) return PIL_RESAMPLE[value];
  if (typeof value === 'string' && Object.values(PIL_RESAMPLE).includes(value as Resample)) return value as Resample;
  throw new Error(`resample must be one of 0-5 (PIL nearest, lanczos, bilinear, bicubic, box, hamming) (got ${JSON.stringify(value)})`);
}

function triple(value: unknown, what: string): [number, number, number] {
  const v = typeof value === 'number' ? [value, value, value] : value;
  if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    throw new Error(`${what} must be a number or 3 numbers, one per RGB channel (got ${JSON.stringify(value)})`);
  }
  return v as [number, number, number];
}

function bool(value: unknown, fallback: boolean, what: string): boolean {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean') throw new Error(`${what} must be true or false (got ${JSON.stringify(value)})`);
  return value;
}

/** CLIPImageProcessor.__init__ from a preprocessor_config.json dict (unknown keys ignored). */
export function configFromDict(d: Record<string, unknown>): ImageProcessorConfig {
  const std = triple(d.image_std ?? CLIP_STD, 'image_std');
  if (std.some((s) => s === 0)) throw new Error('image_std must not contain 0');
  const rescaleFactor = d.rescale_factor ?? 1 / 255;
  if (typeof rescaleFactor !== 'number') throw new Error(`rescale_factor must be a number (got ${JSON.stringify(rescaleFactor)})`);
  return {
    doResize: bool(d.do_resize, true, 'do_resize'),
    size: sizeDict(d.size ?? 224, false, 'size'),
    resample: resampleOf(d.resample ?? 3),
    doCenterCrop: bool(d.do_center_crop, true, 'do_center_crop'),
    cropSize: cropDict(d.crop_size ?? 224, 'crop_size'),
    doRescale: bool(d.do_rescale, true, 'do_rescale'),
    rescaleFactor,
    doNormalize: bool(d.do_normalize, true, 'do_normalize'),
    imageMean: triple(d.image_mean ?? CLIP_MEAN, 'image_mean'),
    imageStd: std,
    doConvertRgb: bool(d.do_convert_rgb, true, 'do_convert_rgb'),
  };
}

export { convertToRGB, dropAlpha, shortestEdgeSize } from './transform.js';

function applyOverrides(c: ImageProcessorConfig, o: PreprocessOverrides): ImageProcessorConfig {
  const std = o.imageStd === undefined ? c.imageStd : triple(o.imageStd, 'imageStd');
  if (std.some((s) => s === 0)) throw new Error('imageStd must not contain 0');
  return {
    doResize: bool(o.doResize, c.doResize, 'doResize'),
    size: o.size === undefined ? c.size : sizeDict(o.size, false, 'size'),
    resample: o.resample === undefined ? c.resample : resampleOf(o.resample),
    doCenterCrop: bool(o.doCenterCrop, c.doCenterCrop, 'doCenterCrop'),
    cropSize: o.cropSize === undefined ? c.cropSize : cropDict(o.cropSize, 'cropSize'),
    doRescale: bool(o.doRescale, c.doRescale, 'doRescale'),
    rescaleFactor: o.rescaleFactor ?? c.rescaleFactor,
    doNormalize: bool(o.doNormalize, c.doNormalize, 'doNormalize'),
    imageMean: o.imageMean === undefined ? c.imageMean : triple(o.imageMean, 'imageMean'),
    imageStd: std,
    doConvertRgb: bool(o.doConvertRgb, c.doConvertRgb, 'doConvertRgb'),
  };
}

export class CLIPImageProcessor {
  readonly config: ImageProcessorConfig;
  /** Decoding options used by every call unless overridden. */
  readonly decodeOptions: ImageDecodeOptions;

  /** `dict` is a preprocessor_config.json object (snake_case keys, both size layouts). */
  constructor(dict: Record<string, unknown> = {}, decodeOptions: ImageDecodeOptions = {}) {
    this.config = configFromDict(dict);
    this.decodeOptions = decodeOptions;
  }

  static async fromPretrained(pathOrRepoId: string, options: PretrainedOptions & ImageDecodeOptions = {}): Promise<CLIPImageProcessor> {
    const file = (await resolveFile(pathOrRepoId, 'preprocessor_config.json', options)) as string;
    let dict: unknown;
    try {
      dict = JSON.parse(await fs.readFile(file, 'utf8'));
    } catch (e) {
      throw new Error(`${file}: cannot read the image processor config: ${(e as Error).message}`);
    }
    if (typeof dict !== 'object' || dict === null || Array.isArray(dict)) throw new Error(`${file}: expected a JSON object`);
    try {
      return new CLIPImageProcessor(dict as Record<string, unknown>, { applyExifOrientation: options.applyExifOrientation, maxPixels: options.maxPixels });
    } catch (e) {
      throw new Error(`${file}: ${(e as Error).message}`);
    }
  }

  /**
   * The steps before the float math — decode, convert_to_rgb, resize, center crop — as uint8 RGB
   * HWC (what the reference feeds to rescale / normalize).
   */
  async preprocessUint8(image: ImageInput, overrides: PreprocessOverrides = {}): Promise<RawImage> {
    const cfg = applyOverrides(this.config, overrides);
    return prepareImage(image, cfg, { ...this.decodeOptions, ...definedOnly(overrides) }, false);
  }

  /** `processor(images=...)`: pixel values [N, 3, H, W] float32. */
  async preprocess(images: ImageInput | ImageInput[], overrides: PreprocessOverrides = {}): Promise<{ pixelValues: Tensor }> {
    const list = Array.isArray(images) ? images : [images];
    if (list.length === 0) throw new Error('preprocess: no images given');
    const cfg = applyOverrides(this.config, overrides);
    const decodeOptions = { ...this.decodeOptions, ...definedOnly(overrides) };
    const luts = channelLuts(cfg);
    let out: Float32Array | null = null;
    let h = 0, w = 0;
    // Images are prepared side by side on the decoding threads (pool.ts), at most one per thread
    // ahead of the one being stacked, so a long list never has all its images decoded at once.
    const ahead = Math.max(1, decodeThreads());
    const pending: Promise<RawImage>[] = [];
    const start = (k: number) => {
      const p = prepareImage(list[k], cfg, decodeOptions, true);
      p.catch(() => {}); // surfaced when awaited, in input order
      pending[k] = p;
    };
    for (let i = 0; i < list.length; i++) {
      for (let k = pending.length; k < Math.min(list.length, i + ahead + 1); k++) start(k);
      let img: RawImage;
      try {
        img = await pending[i];
      } catch (e) {
        // decoding errors name their input already; resize / crop ones get its name here
        throw e instanceof TransformError ? new Error(`${describe(list[i], i)}: ${e.message}`) : e;
      } finally {
        delete pending[i];
      }
      if (out === null) {
        [h, w] = [img.height, img.width];
        out = new Float32Array(list.length * 3 * h * w);
      } else if (img.height !== h || img.width !== w) {
        throw new Error(`preprocess: image ${i} is ${img.width}x${img.height} but image 0 is ${w}x${h}; without center crop the batch cannot be stacked`);
      }
      toCHW(img, luts, out, i * 3 * h * w);
    }
    return { pixelValues: new Tensor('float32', out!, [list.length, 3, h, w]) };
  }
}

function describe(input: ImageInput, i: number): string {
  if (typeof input === 'string') return input;
  if (input instanceof URL) return input.href;
  return input instanceof Uint8Array ? `image ${i} (encoded bytes)` : `image ${i} (raw pixels)`;
}

function definedOnly(o: ImageDecodeOptions): ImageDecodeOptions {
  const r: ImageDecodeOptions = {};
  if (o.applyExifOrientation !== undefined) r.applyExifOrientation = o.applyExifOrientation;
  if (o.maxPixels !== undefined) r.maxPixels = o.maxPixels;
  return r;
}

/**
 * The float value of each uint8 level per channel, computed exactly as transformers does:
 * rescale = `uint8 * factor` in float64 cast to float32; normalize = `(x - mean) / std` in float32.
 */
function channelLuts(cfg: ImageProcessorConfig): Float32Array[] {
  const f = Math.fround;
  return [0, 1, 2].map((c) => {
    const lut = new Float32Array(256);
    const mean = f(cfg.imageMean[c]);
    const std = f(cfg.imageStd[c]);
    for (let v = 0; v < 256; v++) {
      let x = cfg.doRescale ? f(v * cfg.rescaleFactor) : v;
      if (cfg.doNormalize) x = f(f(x - mean) / std);
      lut[v] = x;
    }
    return lut;
  });
}

/** HWC uint8 (1 or 3 channels) -> CHW float32 at `offset` of `out`. */
function toCHW(img: RawImage, luts: Float32Array[], out: Float32Array, offset: number): void {
  const n = img.width * img.height;
  const ch = img.channels;
  const d = img.data;
  for (let c = 0; c < 3; c++) {
    const lut = luts[c];
    const src = ch === 1 ? 0 : c;
    const o = offset + c * n;
    for (let i = 0; i < n; i++) out[o + i] = lut[d[i * ch + src]];
  }
}
