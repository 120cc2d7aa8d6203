// Pillow 9.4's Image.resize on 8-bit images, bit for bit.
//
// Mirrors src/libImaging/Resample.c (precompute_coeffs, normalize_coeffs_8bpc,
// ImagingResampleHorizontal_8bpc / Vertical_8bpc, ImagingResampleInner) for the convolution
// filters, and src/libImaging/Geometry.c (ImagingScaleAffine) for NEAREST, which Pillow runs as an
// affine transform. Every channel is filtered independently, as Pillow does for L / RGB / RGBX.
// Pillow premultiplies RGBA / LA before resizing (Image.resize converts to RGBa / La); this module
// does not: it is only called on images whose alpha was already dropped.
import { RESAMPLE_WASM } from './resample_wasm.js';
import type { RawImage } from './types.js';

export type Resample = 'nearest' | 'lanczos' | 'bilinear' | 'bicubic' | 'box' | 'hamming';

/** PIL.Image.Resampling values, as stored in preprocessor_config.json's `resample`. */
export const PIL_RESAMPLE: Readonly<Record<number, Resample>> = {
  0: 'nearest',
  1: 'lanczos',
  2: 'bilinear',
  3: 'bicubic',
  4: 'box',
  5: 'hamming',
};

/** A window of the resized image: [left, left + width) x [top, top + height). */
export interface Region {
  left: number;
  top: number;
  width: number;
  height: number;
}

interface Filter {
  fn: (x: number) => number;
  support: number;
}

// Filter kernels exactly as Resample.c writes them (same operation order, so the same doubles).
const F32_054 = Math.fround(0.54); // `0.54f` in the C source
const F32_046 = Math.fround(0.46);

function sinc(x: number): number {
  if (x === 0.0) return 1.0;
  x = x * Math.PI;
  return Math.sin(x) / x;
}

const FILTERS: Record<Exclude<Resample, 'nearest'>, Filter> = {
  box: { support: 0.5, fn: (x) => (x > -0.5 && x <= 0.5 ? 1.0 : 0.0) },
  bilinear: {
    support: 1.0,
    fn: (x) => {
      if (x < 0.0) x = -x;
      return x < 1.0 ? 1.0 - x : 0.0;
    },
  },
  hamming: {
    support: 1.0,
    fn: (x) => {
      if (x < 0.0) x = -x;
      if (x === 0.0) return 1.0;
      if (x >= 1.0) return 0.0;
      x = x * Math.PI;
      return (Math.sin(x) / x) * (F32_054 + F32_046 * Math.cos(x));
    },
  },
  bicubic: {
    support: 2.0,
    fn: (x) => {
      const a = -0.5;
      if (x < 0.0) x = -x;
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    },
  },
  lanczos: { support: 3.0, fn: (x) => (-3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0) },
};

/** 8 bits of result, 2 bits of headroom for negative lobes / overshoot (Resample.c). */
const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

interface Coeffs {
  ksize: number;
  /** Per output position: first input index and number of taps. */
  bounds: Int32Array;
  /** Fixed-point taps, `ksize` per output position. */
  kk: Int32Array;
}

/**
 * precompute_coeffs + normalize_coeffs_8bpc for output positions [first, first + count) of a
 * resize of `inSize` samples to `outSize` (box = the whole input).
 */
function precomputeCoeffs(inSize: number, outSize: number, filter: Filter, first: number, count: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = scale < 1.0 ? 1.0 : scale;
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(count * 2);
  const kk = new Int32Array(count * ksize);
  const w = new Float64Array(ksize);
  const ss = 1.0 / filterscale;
  for (let i = 0; i < count; i++) {
    const xx = first + i;
    const center = 0 + (xx + 0.5) * scale;
    let ww = 0.0;
    // (int) casts in C truncate toward zero.
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    for (let x = 0; x < xmax; x++) {
      const v = filter.fn((x + xmin - center + 0.5) * ss);
      w[x] = v;
      ww += v;
    }
    for (let x = 0; x < xmax; x++) {
      let k = w[x];
      if (ww !== 0.0) k /= ww;
      kk[i * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
    }
    bounds[i * 2] = xmin;
    bounds[i * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

/**
 * Horizontal pass over rows [y0, y0 + rows) of `src`; `c` gives the output columns.
 * Output: rows x c.count pixels, clip8-rounded like ImagingResampleHorizontal_8bpc.
 */
function horizontal(src: Uint8Array, srcWidth: number, ch: number, y0: number, rows: number, c: Coeffs): Uint8Array {
  const { ksize, bounds, kk } = c;
  const outW = bounds.length >> 1;
  // Uint8ClampedArray stores `s >> PRECISION_BITS` clamped to 0..255: Pillow's clip8.
  const out = new Uint8ClampedArray(rows * outW * ch);
  const srcStride = srcWidth * ch;
  let o = 0;
  if (ch === 3) {
    for (let y = 0; y < rows; y++) {
      const row = (y0 + y) * srcStride;
      for (let xx = 0; xx < outW; xx++) {
        const n = bounds[2 * xx + 1];
        let p = row + bounds[2 * xx] * 3;
        let k = xx * ksize;
        let s0 = HALF, s1 = HALF, s2 = HALF;
        for (const end = k + n; k < end; k++, p += 3) {
          const w = kk[k];
          s0 = (s0 + src[p] * w) | 0;
          s1 = (s1 + src[p + 1] * w) | 0;
          s2 = (s2 + src[p + 2] * w) | 0;
        }
        out[o++] = s0 >> PRECISION_BITS;
        out[o++] = s1 >> PRECISION_BITS;
        out[o++] = s2 >> PRECISION_BITS;
      }
    }
  } else {
    for (let y = 0; y < rows; y++) {
      const row = (y0 + y) * srcStride;
      for (let xx = 0; xx < outW; xx++) {
        const n = bounds[2 * xx + 1];
        const base = row + bounds[2 * xx] * ch;
        const k0 = xx * ksize;
        for (let b = 0; b < ch; b++) {
          let s = HALF;
          for (let x = 0; x < n; x++) s = (s + src[base + x * ch + b] * kk[k0 + x]) | 0;
          out[o++] = s >> PRECISION_BITS;
        }
      }
    }
  }
  return new Uint8Array(out.buffer);
}

/** Vertical pass: output rows given by `c` (their bounds relative to the first row of `src`). */
function vertical(src: Uint8Array, width: number, ch: number, c: Coeffs): Uint8Array {
  const { ksize, bounds, kk } = c;
  const outH = bounds.length >> 1;
  const stride = width * ch;
  const out = new Uint8ClampedArray(outH * stride);
  const acc = new Int32Array(stride);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[2 * yy];
    const n = bounds[2 * yy + 1];
    // Same sums as Pillow's per-pixel loop (integer adds are associative), row at a time.
    acc.fill(HALF);
    for (let y = 0; y < n; y++) {
      const w = kk[yy * ksize + y];
      const row = (ymin + y) * stride;
      for (let i = 0; i < stride; i++) acc[i] = (acc[i] + src[row + i] * w) | 0;
    }
    const o = yy * stride;
    for (let i = 0; i < stride; i++) out[o + i] = acc[i] >> PRECISION_BITS;
  }
  return new Uint8Array(out.buffer);
}

// The same passes in WebAssembly SIMD (resample.wat), 3-6x faster than the JS loops above, which
// stay as the fallback and for the horizontal pass of 1/2/4-channel images.
interface WasmPasses {
  memory: WebAssembly.Memory;
  hpass3(src: number, srcStride: number, rows: number, outW: number, bounds: number, kk: number, ksize: number, out: number): void;
  hpass3x2(src: number, srcStride: number, pairs: number, outW: number, bounds: number, kk: number, ksize: number, out: number): void;
  vpass(src: number, stride: number, outH: number, bounds: number, kk: number, ksize: number, out: number): void;
}
let wasm: WasmPasses | null | undefined;
let backend: 'wasm' | 'js' = 'wasm';

function wasmPasses(): WasmPasses | null {
  if (backend === 'js') return null;
  if (wasm === undefined) {
    try {
      const module = new WebAssembly.Module(Buffer.from(RESAMPLE_WASM, 'base64'));
      wasm = new WebAssembly.Instance(module, {}).exports as unknown as WasmPasses;
    } catch {
      wasm = null; // no WebAssembly SIMD: the JS passes give the same bytes
    }
  }
  return wasm;
}

/** Choose the pass implementation (both give identical bytes; 'js' is for tests and old runtimes). */
export function setResampleBackend(b: 'wasm' | 'js'): void {
  backend = b;
}

/** Lays out byte lengths in the wasm memory (16-byte aligned, 16 spare bytes each), growing it. */
function wasmLayout(w: WasmPasses, sizes: number[]): number[] {
  const offsets: number[] = [];
  let end = 0;
  for (const size of sizes) {
    offsets.push(end);
    end += Math.ceil((size + 16) / 16) * 16;
  }
  const have = w.memory.buffer.byteLength;
  if (end > have) w.memory.grow(Math.ceil((end - have) / 65536));
  return offsets;
}

/** Wasm memory never shrinks: after a very large image, drop the instance so it can be collected. */
function releaseIfLarge(w: WasmPasses): void {
  if (w.memory.buffer.byteLength > 64 * 2 ** 20) wasm = undefined;
}

/** Source bytes copied into wasm memory per horizontal-pass strip (the pass is row by row). */
const STRIP_BYTES = 8 * 2 ** 20;

function horizontalWasm(w: WasmPasses, src: Uint8Array, srcWidth: number, y0: number, rows: number, c: Coeffs): Uint8Array {
  const outW = c.bounds.length >> 1;
  const stride = srcWidth * 3;
  // Each output row depends on its source row only, so the rows go through wasm memory in strips (an
  // even number of rows, for hpass3x2's pairs): a 9400-px-wide image does not need a second copy of
  // itself in wasm memory, only ~8 MB.
  const strip = Math.min(rows, Math.max(2, Math.floor(STRIP_BYTES / stride / 2) * 2));
  const out = new Uint8Array(rows * outW * 3);
  const [pSrc, pBounds, pKK, pOut] = wasmLayout(w, [strip * stride, c.bounds.byteLength, c.kk.byteLength, strip * outW * 3]);
  const mem = new Uint8Array(w.memory.buffer);
  new Int32Array(w.memory.buffer, pBounds, c.bounds.length).set(c.bounds);
  new Int32Array(w.memory.buffer, pKK, c.kk.length).set(c.kk);
  for (let r0 = 0; r0 < rows; r0 += strip) {
    const n = Math.min(strip, rows - r0);
    mem.set(src.subarray((y0 + r0) * stride, (y0 + r0 + n) * stride), pSrc);
    const pairs = n >> 1;
    w.hpass3x2(pSrc, stride, pairs, outW, pBounds, pKK, c.ksize, pOut);
    if (n & 1) w.hpass3(pSrc + 2 * pairs * stride, stride, 1, outW, pBounds, pKK, c.ksize, pOut + 2 * pairs * outW * 3);
    out.set(mem.subarray(pOut, pOut + n * outW * 3), r0 * outW * 3);
  }
  releaseIfLarge(w);
  return out;
}

function verticalWasm(w: WasmPasses, src: Uint8Array, width: number, ch: number, c: Coeffs): Uint8Array {
  const outH = c.bounds.length >> 1;
  const outLen = outH * width * ch;
  const [pSrc, pBounds, pKK, pOut] = wasmLayout(w, [src.length, c.bounds.byteLength, c.kk.byteLength, outLen]);
  const mem = new Uint8Array(w.memory.buffer);
  mem.set(src, pSrc);
  new Int32Array(w.memory.buffer, pBounds, c.bounds.length).set(c.bounds);
  new Int32Array(w.memory.buffer, pKK, c.kk.length).set(c.kk);
  w.vpass(pSrc, width * ch, outH, pBounds, pKK, c.ksize, pOut);
  const out = mem.slice(pOut, pOut + outLen);
  releaseIfLarge(w);
  return out;
}

function copyRegion(image: RawImage, r: Region): Uint8Array {
  const { width, channels: ch } = image;
  const out = new Uint8Array(r.width * r.height * ch);
  for (let y = 0; y < r.height; y++) {
    const s = ((r.top + y) * width + r.left) * ch;
    out.set(image.data.subarray(s, s + r.width * ch), y * r.width * ch);
  }
  return out;
}

/** ImagingScaleAffine (Geometry.c): Pillow's NEAREST resize, positions accumulated in doubles. */
function nearest(image: RawImage, outW: number, outH: number, r: Region): Uint8Array {
  const { width, height, channels: ch, data } = image;
  const a0 = width / outW;
  const a4 = height / outH;
  const coord = (v: number) => (v < 0.0 ? -1 : Math.trunc(v));
  const xin = new Int32Array(outW).fill(-1);
  let xo = 0 + a0 * 0.5;
  for (let x = 0; x < outW; x++) {
    const xi = coord(xo);
    if (xi >= 0 && xi < width) xin[x] = xi;
    xo += a0;
  }
  const out = new Uint8Array(r.width * r.height * ch); // `fill`: pixels mapped outside stay 0
  let yo = 0 + a4 * 0.5;
  for (let y = 0; y < r.top + r.height; y++) {
    const yi = coord(yo);
    yo += a4;
    if (y < r.top || yi < 0 || yi >= height) continue;
    const o = (y - r.top) * r.width * ch;
    for (let x = 0; x < r.width; x++) {
      const xi = xin[r.left + x];
      if (xi < 0) continue;
      for (let b = 0; b < ch; b++) out[o + x * ch + b] = data[(yi * width + xi) * ch + b];
    }
  }
  return out;
}

/**
 * `Image.resize((width, height), resample)` of Pillow 9.4 on an 8-bit image (reducing_gap=None,
 * box = whole image). With `region`, returns only that window of the result — the same bytes as
 * resizing fully and cropping, without computing the pixels the crop throws away.
 */
export function resize(image: RawImage, width: number, height: number, resample: Resample = 'bicubic', region?: Region): RawImage {
  const r = region ?? { left: 0, top: 0, width, height };
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new Error(`resize: invalid target size ${width}x${height}`);
  }
  if (r.left < 0 || r.top < 0 || r.width <= 0 || r.height <= 0 || r.left + r.width > width || r.top + r.height > height) {
    throw new Error(`resize: region ${JSON.stringify(r)} is outside the ${width}x${height} result`);
  }
  const ch = image.channels;
  const data = image.data instanceof Uint8Array ? image.data : new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.length);
  const src: RawImage = { ...image, data };
  const result = (out: Uint8Array): RawImage => ({ data: out, width: r.width, height: r.height, channels: ch });

  // Image.resize returns a copy when the size does not change (any filter).
  if (width === image.width && height === image.height) return result(copyRegion(src, r));
  if (resample === 'nearest') return result(nearest(src, width, height, r));

  const filter = FILTERS[resample];
  if (!filter) throw new Error(`resize: unsupported resampling filter ${String(resample)}`);
  const needHorizontal = width !== image.width;
  const needVertical = height !== image.height;

  // Source rows the vertical pass reads (ybox_first / ybox_last in ImagingResampleInner).
  let vert: Coeffs | null = null;
  let y0 = r.top;
  let rows = r.height;
  if (needVertical) {
    vert = precomputeCoeffs(image.height, height, filter, r.top, r.height);
    const last = vert.bounds.length - 2;
    y0 = vert.bounds[0];
    rows = vert.bounds[last] + vert.bounds[last + 1] - y0;
    for (let i = 0; i < vert.bounds.length; i += 2) vert.bounds[i] -= y0;
  }
  const w = wasmPasses();
  let tmp: Uint8Array;
  if (needHorizontal) {
    const horiz = precomputeCoeffs(image.width, width, filter, r.left, r.width);
    tmp = w && ch === 3 ? horizontalWasm(w, data, image.width, y0, rows, horiz) : horizontal(data, image.width, ch, y0, rows, horiz);
  } else {
    tmp = copyRegion(src, { left: r.left, top: y0, width: r.width, height: rows });
  }
  if (!vert) return result(tmp);
  return result(w ? verticalWasm(w, tmp, r.width, ch, vert) : vertical(tmp, r.width, ch, vert));
}
