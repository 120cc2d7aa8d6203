// The uint8 steps of CLIPImageProcessor after decoding: convert_to_rgb -> resize (PIL) -> center_crop,
// on decoded pixels. Kept apart from processor.ts (config, hub) so that the decoding threads
// (prepare_worker.ts) load only what they run.
import { resize, type Region } from './resample.js';
import type { ImageProcessorConfig } from './processor.js';
import type { RawImage } from './types.js';

/** get_resize_output_image_size(default_to_square=False): the short side to `edge`, the long one int(edge * long / short). */
export function shortestEdgeSize(width: number, height: number, edge: number): { width: number; height: number } {
  const [short, long] = width <= height ? [width, height] : [height, width];
  if (short === edge) return { width, height };
  const newLong = Math.trunc((edge * long) / short);
  return width <= height ? { width: edge, height: newLong } : { width: newLong, height: edge };
}

/** Drop the alpha channel (LA -> L, RGBA -> RGB); the rest of convert("RGB") is per-channel. */
export function dropAlpha(image: RawImage): RawImage {
  const { width, height, channels: ch, data } = image;
  if (ch === 1 || ch === 3) return image;
  const c = ch - 1;
  const n = width * height;
  const out = new Uint8Array(n * c);
  for (let i = 0; i < n; i++) for (let b = 0; b < c; b++) out[i * c + b] = data[i * ch + b];
  return { data: out, width, height, channels: c as 1 | 3 };
}

/** Gray (1 channel) -> RGB by replicating the value; RGB is returned as it is. */
function grayToRgb(img: RawImage): RawImage {
  if (img.channels === 3) return img;
  if (img.channels !== 1) throw new Error(`grayToRgb: expected 1 or 3 channels, got ${img.channels}`);
  const n = img.width * img.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) out[i * 3] = out[i * 3 + 1] = out[i * 3 + 2] = img.data[i];
  return { data: out, width: img.width, height: img.height, channels: 3 };
}

/**
 * convert_to_rgb = Pillow 9.4's Image.convert("RGB") of a decoded image: alpha dropped without
 * compositing (the hidden colour of transparent pixels stays), gray replicated. The processor runs
 * the same two steps with the resize in between (gray is resized as one channel).
 */
export function convertToRGB(image: RawImage): RawImage {
  return grayToRgb(dropAlpha(image));
}

/**
 * transformers' center_crop when the crop reaches outside the image (zero padding). A crop inside
 * the image never comes here: resizeAndCrop resizes only that window.
 */
function centerCrop(img: RawImage, cropH: number, cropW: number): RawImage {
  const { width: w, height: h, channels: ch, data } = img;
  const top = Math.floor((h - cropH) / 2);
  const left = Math.floor((w - cropW) / 2);
  // Padding then slicing puts source pixel (top + y, left + x) at output (y, x); the rest is 0.
  const out = new Uint8Array(cropH * cropW * ch);
  for (let y = 0; y < cropH; y++) {
    const sy = top + y;
    if (sy < 0 || sy >= h) continue;
    for (let x = 0; x < cropW; x++) {
      const sx = left + x;
      if (sx < 0 || sx >= w) continue;
      for (let b = 0; b < ch; b++) out[(y * cropW + x) * ch + b] = data[(sy * w + sx) * ch + b];
    }
  }
  return { data: out, width: cropW, height: cropH, channels: ch };
}


/**
 * convert_to_rgb -> resize -> center_crop of decoded pixels, as uint8 HWC. With `keepGray`, gray input
 * stays 1 channel (the float step expands it).
 */
export function resizeAndCrop(decoded: RawImage, cfg: ImageProcessorConfig, keepGray: boolean): RawImage {
  let img = decoded;
  if (cfg.doConvertRgb) {
    // convert("RGB") = drop alpha + replicate gray; every later step treats channels
    // independently, so gray stays one channel until the end (same bytes, a third of the work).
    img = dropAlpha(img);
  } else if (img.channels !== 3) {
    // transformers fails too (2-D arrays / 4-channel mean mismatch), just less clearly.
    throw new Error(`image has ${img.channels} channels; doConvertRgb: false needs RGB input`);
  }
  let target = { width: img.width, height: img.height };
  if (cfg.doResize) {
    target = 'shortestEdge' in cfg.size ? shortestEdgeSize(img.width, img.height, cfg.size.shortestEdge) : { width: cfg.size.width, height: cfg.size.height };
  }
  let out: RawImage;
  if (cfg.doCenterCrop) {
    const { height: ch, width: cw } = cfg.cropSize;
    const top = Math.floor((target.height - ch) / 2);
    const left = Math.floor((target.width - cw) / 2);
    const region: Region = { left, top, width: cw, height: ch };
    if (top >= 0 && left >= 0 && top + ch <= target.height && left + cw <= target.width) {
      out = resize(img, target.width, target.height, cfg.resample, region); // only the kept window
    } else {
      out = centerCrop(resize(img, target.width, target.height, cfg.resample), ch, cw);
    }
  } else {
    out = resize(img, target.width, target.height, cfg.resample);
  }
  if (!keepGray) out = grayToRgb(out);
  return out;
}
