// Element types as the safetensors format names them (safetensors' Rust `Dtype` enum), their sizes,
// the TensorRef every reader produces, and reading a tensor's bytes / converting them to float32.
import * as fs from 'node:fs';

/** Bits per element, for every dtype the safetensors format defines. */
export const DTYPE_BITS = {
  BOOL: 8, U8: 8, I8: 8, U16: 16, I16: 16, U32: 32, I32: 32, U64: 64, I64: 64,
  F16: 16, BF16: 16, F32: 32, F64: 64, C64: 64,
  F8_E4M3: 8, F8_E5M2: 8, F8_E8M0: 8, F6_E2M3: 6, F6_E3M2: 6, F4: 4,
} as const;

export type DType = keyof typeof DTYPE_BITS;

/** Where a tensor's bytes are: a byte range of a file, or (compressed zip entries) in memory. */
export interface TensorRef {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute, real path of the file holding the bytes (symlinks resolved). */
  file: string;
  /** Byte offset of the tensor's first byte in `file`. */
  offset: number;
  byteLength: number;
  /** Only when the bytes are not addressable in a file (a compressed zip entry). */
  data?: Uint8Array;
}

/** fs.readSync reads at most 2 GiB - 1 per call. */
export const MAX_READ = 1 << 30;

/** A tensor's raw bytes: `data`, or read from its file (positioned reads, no mmap). */
export function readTensorBytes(ref: TensorRef): Uint8Array {
  if (ref.data) return ref.data;
  const out = new Uint8Array(ref.byteLength);
  const fd = fs.openSync(ref.file, 'r');
  try {
    let done = 0;
    while (done < out.length) {
      const n = fs.readSync(fd, out, done, Math.min(out.length - done, MAX_READ), ref.offset + done);
      if (n === 0) throw new Error(`${ref.file}: file ends inside tensor ${ref.name} (truncated since it was opened?)`);
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.hasOwn(DTYPE_BITS, s);
}

/**
 * Bytes taken by `numel` elements. As in safetensors, sub-byte types must fill whole bytes
 * (`MisalignedSlice` otherwise); returns null then.
 */
export function byteSize(dtype: DType, numel: number): number | null {
  const bits = numel * DTYPE_BITS[dtype];
  return bits % 8 === 0 ? bits / 8 : null;
}

/** Product of a shape's dims; null when it is not a safe integer. */
export function numelOf(shape: readonly number[]): number | null {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return null;
  }
  return n;
}

// Half precision (IEEE binary16) -> float32, via a 64K lookup built once.
let halfTable: Float32Array | undefined;
function halfToFloat(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    halfTable[h] = exp === 0 ? sign * frac * 2 ** -24
      : exp === 31 ? (frac ? NaN : sign * Infinity)
      : sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return halfTable;
}

/** OCP fp8 formats (what torch.float8_e4m3fn / float8_e5m2 / float8_e8m0fnu hold). */
function fp8ToFloat(dtype: 'F8_E4M3' | 'F8_E5M2' | 'F8_E8M0', b: number): number {
  if (dtype === 'F8_E8M0') return b === 0xff ? NaN : 2 ** (b - 127);
  const sign = b & 0x80 ? -1 : 1;
  const [mbits, bias] = dtype === 'F8_E4M3' ? [3, 7] : [2, 15];
  const exp = (b & 0x7f) >> mbits;
  const frac = b & ((1 << mbits) - 1);
  const maxExp = (1 << (7 - mbits)) - 1;
  if (dtype === 'F8_E4M3' && exp === maxExp && frac === 7) return NaN; // e4m3fn: no infinities
  if (dtype === 'F8_E5M2' && exp === maxExp) return frac ? NaN : sign * Infinity;
  if (exp === 0) return sign * frac * 2 ** (1 - bias - mbits);
  return sign * (1 + frac / (1 << mbits)) * 2 ** (exp - bias);
}

/**
 * A tensor's raw little-endian bytes as float32 values. Float types are widened or rounded to
 * float32 (what `tensor.float()` gives); integer and bool types are converted by value.
 */
export function toFloat32(dtype: DType, bytes: Uint8Array): Float32Array {
  if (DTYPE_BITS[dtype] % 8 || dtype === 'C64') throw new Error(`${dtype} values have no float32 conversion`);
  const n = Math.floor(bytes.byteLength / (DTYPE_BITS[dtype] / 8));
  if (dtype === 'F32') {
    const out = new Float32Array(n); // an aligned copy (bytes may be a Buffer view at any offset)
    new Uint8Array(out.buffer).set(bytes.subarray(0, n * 4));
    return out;
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  switch (dtype) {
    case 'F64': for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true); return out;
    case 'F16': {
      const t = halfToFloat();
      for (let i = 0; i < n; i++) out[i] = t[dv.getUint16(i * 2, true)];
      return out;
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = dv.getUint16(i * 2, true) << 16;
      return out;
    }
    case 'F8_E4M3': case 'F8_E5M2': case 'F8_E8M0':
      for (let i = 0; i < n; i++) out[i] = fp8ToFloat(dtype, bytes[i]);
      return out;
    case 'BOOL': case 'U8': for (let i = 0; i < n; i++) out[i] = bytes[i]; return out;
    case 'I8': for (let i = 0; i < n; i++) out[i] = dv.getInt8(i); return out;
    case 'U16': for (let i = 0; i < n; i++) out[i] = dv.getUint16(i * 2, true); return out;
    case 'I16': for (let i = 0; i < n; i++) out[i] = dv.getInt16(i * 2, true); return out;
    case 'U32': for (let i = 0; i < n; i++) out[i] = dv.getUint32(i * 4, true); return out;
    case 'I32': for (let i = 0; i < n; i++) out[i] = dv.getInt32(i * 4, true); return out;
    case 'U64': for (let i = 0; i < n; i++) out[i] = Number(dv.getBigUint64(i * 8, true)); return out;
    case 'I64': for (let i = 0; i < n; i++) out[i] = Number(dv.getBigInt64(i * 8, true)); return out;
    default:
      throw new Error(`${dtype} values have no float32 conversion`);
  }
}

/**
 * Index of the first NaN or infinity among a float tensor's raw bytes, -1 if none (and for
 * non-float dtypes). Tests the exponent bits only, so it costs about a nanosecond per element.
 */
export function firstNonFinite(dtype: DType, bytes: Uint8Array): number {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32': {
      const n = bytes.byteLength >> 2;
      const u = bytes.byteOffset % 4 === 0 ? new Uint32Array(bytes.buffer, bytes.byteOffset, n) : null;
      for (let i = 0; i < n; i++) {
        const v = u ? u[i] : dv.getUint32(i * 4, true);
        if ((v & 0x7f800000) === 0x7f800000) return i;
      }
      return -1;
    }
    case 'F16':
      for (let i = 0; i < bytes.byteLength >> 1; i++) if ((dv.getUint16(i * 2, true) & 0x7c00) === 0x7c00) return i;
      return -1;
    case 'BF16':
      for (let i = 0; i < bytes.byteLength >> 1; i++) if ((dv.getUint16(i * 2, true) & 0x7f80) === 0x7f80) return i;
      return -1;
    case 'F64':
      for (let i = 0; i < bytes.byteLength >> 3; i++) if ((dv.getUint32(i * 8 + 4, true) & 0x7ff00000) === 0x7ff00000) return i;
      return -1;
    default:
      return -1;
  }
}
