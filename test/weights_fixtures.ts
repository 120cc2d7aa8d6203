// Builders for the weights tests: safetensors files, zip archives and hand-written pickles laid out
// as torch.save writes them (torch/serialization.py `_save`: protocol-2 pickle, persistent ids
// ('storage', torch.<Type>Storage, key, 'cpu', numel), entries <prefix>/data.pkl, <prefix>/data/<key>).
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { crc32 } from '../src/weights/zip.js';

export interface RawTensor { name: string; dtype: string; shape: number[]; bytes: Uint8Array }

export function safetensorsBytes(tensors: RawTensor[], metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  return rawSafetensors(JSON.stringify(header), Buffer.concat(tensors.map((t) => t.bytes)));
}

/** A safetensors file from a header given as text (for corrupt headers) and the data bytes. */
export function rawSafetensors(headerJson: string | Uint8Array, data: Uint8Array): Buffer {
  const json = typeof headerJson === 'string' ? Buffer.from(headerJson) : headerJson;
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

export interface ZipInput { name: string; data: Uint8Array; deflate?: boolean }

/** A zip archive (no zip64), data of stored entries aligned to 64 bytes as torch's writer does. */
export function zipBytes(entries: ZipInput[]): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let pos = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const body = e.deflate ? zlib.deflateRawSync(e.data) : Buffer.from(e.data);
    const pad = (64 - ((pos + 30 + name.length + 4) % 64)) % 64;
    const extra = Buffer.alloc(4 + pad);
    extra.writeUInt16LE(0x4246, 0); // torch's "FB" padding field
    extra.writeUInt16LE(pad, 2);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(e.deflate ? 8 : 0, 8);
    local.writeUInt32LE(crc32(e.data), 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(e.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(extra.length, 28);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(e.deflate ? 8 : 0, 10);
    cd.writeUInt32LE(crc32(e.data), 16);
    cd.writeUInt32LE(body.length, 20);
    cd.writeUInt32LE(e.data.length, 24);
    cd.writeUInt16LE(name.length, 28);
    cd.writeUInt32LE(pos, 42);
    central.push(cd, name);
    parts.push(local, name, extra, body);
    pos += 30 + name.length + extra.length + body.length;
  }
  const cdBytes = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(entries.length, 8);
  eocd.writeUInt16LE(entries.length, 10);
  eocd.writeUInt32LE(cdBytes.length, 12);
  eocd.writeUInt32LE(pos, 16);
  return Buffer.concat([...parts, cdBytes, eocd]);
}

/** Writes pickle opcodes by hand (names as in CPython's Lib/pickle.py). */
export class Pickle {
  private out: number[] = [];
  private raw(...b: number[]) { this.out.push(...b); return this; }
  bytes(b: Uint8Array | number[]) { this.out.push(...b); return this; }
  proto(n: number) { return this.raw(0x80, n); }
  mark() { return this.raw(0x28); }
  stop() { return this.raw(0x2e); }
  /** GLOBAL: "c<module>\n<name>\n" */
  global(module: string, name: string) { return this.bytes(Buffer.from(`c${module}\n${name}\n`)); }
  /** SHORT_BINUNICODE x2 + STACK_GLOBAL (protocol 4). */
  stackGlobal(module: string, name: string) { return this.shortStr(module).shortStr(name).raw(0x93); }
  /** BINUNICODE (what protocol 2 writes for str). */
  str(s: string) {
    const b = Buffer.from(s);
    return this.raw(0x58, ...u32(b.length)).bytes(b);
  }
  /** SHORT_BINUNICODE (protocol 4). */
  shortStr(s: string) {
    const b = Buffer.from(s);
    return this.raw(0x8c, b.length).bytes(b);
  }
  int(n: number) {
    if (n >= 0 && n < 256) return this.raw(0x4b, n);
    if (n >= 0 && n < 65536) return this.raw(0x4d, n & 0xff, n >> 8);
    if (n >= -(2 ** 31) && n < 2 ** 31) return this.raw(0x4a, ...u32(n >>> 0));
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt(n));
    return this.raw(0x8a, 8).bytes(b);
  }
  none() { return this.raw(0x4e); }
  bool(v: boolean) { return this.raw(v ? 0x88 : 0x89); }
  emptyTuple() { return this.raw(0x29); }
  emptyDict() { return this.raw(0x7d); }
  emptyList() { return this.raw(0x5d); }
  tuple() { return this.raw(0x74); }
  tuple1() { return this.raw(0x85); }
  tuple2() { return this.raw(0x86); }
  reduce() { return this.raw(0x52); }
  build() { return this.raw(0x62); }
  binpersid() { return this.raw(0x51); }
  setitem() { return this.raw(0x73); }
  setitems() { return this.raw(0x75); }
  append() { return this.raw(0x61); }
  binput(i: number) { return this.raw(0x71, i); }
  binget(i: number) { return this.raw(0x68, i); }
  op(code: number, ...args: number[]) { return this.raw(code, ...args); }
  dims(ds: number[]) {
    this.mark();
    for (const d of ds) this.int(d);
    return this.tuple();
  }
  /** `global(args...)` : GLOBAL MARK args TUPLE REDUCE */
  call(module: string, name: string, args: (p: Pickle) => void) {
    this.global(module, name).mark();
    args(this);
    return this.tuple().reduce();
  }
  build_(): Uint8Array { return Uint8Array.from(this.out); }
}

function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];
}

export const STORAGE_OF: Record<string, string> = {
  F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage', F64: 'DoubleStorage',
  I64: 'LongStorage', I32: 'IntStorage', I16: 'ShortStorage', I8: 'CharStorage', U8: 'ByteStorage', BOOL: 'BoolStorage',
};
const ITEMSIZE: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** One tensor of a state dict pickle: a view of storage `key` (numel elements of dtype). */
export interface TensorView { name: string; dtype: string; key: string; numel: number; offset: number; size: number[]; stride: number[] }

export const contiguousStride = (size: number[]) => size.map((_, i) => size.slice(i + 1).reduce((a, b) => a * b, 1));

/**
 * The pickle torch.save writes for an OrderedDict state dict (protocol 2, `_rebuild_tensor_v2`);
 * `legacy`: persistent ids carry a sixth item, view_metadata None (`_legacy_save`).
 */
export function stateDictPickle(views: TensorView[], legacy = false): Uint8Array {
  const p = new Pickle().proto(2).global('collections', 'OrderedDict').emptyTuple().reduce().mark();
  for (const v of views) {
    p.str(v.name).call('torch._utils', '_rebuild_tensor_v2', (q) => {
      q.mark().str('storage').global('torch', STORAGE_OF[v.dtype]).str(v.key).str('cpu').int(v.numel);
      if (legacy) q.none();
      q.tuple().binpersid();
      q.int(v.offset).dims(v.size).dims(v.stride).bool(false).call('collections', 'OrderedDict', () => {});
    });
  }
  return p.setitems().stop().build_();
}

/** A torch.save zip: one storage per tensor (keys "0", "1", ...), contiguous. */
export function torchBinBytes(tensors: RawTensor[], opts: { prefix?: string; deflate?: boolean } = {}): Buffer {
  const prefix = opts.prefix ?? 'archive';
  const views = tensors.map((t, i) => ({
    name: t.name, dtype: t.dtype, key: String(i), numel: t.bytes.length / ITEMSIZE[t.dtype], offset: 0,
    size: t.shape, stride: contiguousStride(t.shape),
  }));
  return zipBytes([
    { name: `${prefix}/data.pkl`, data: stateDictPickle(views) },
    { name: `${prefix}/byteorder`, data: Buffer.from('little') },
    ...tensors.map((t, i) => ({ name: `${prefix}/data/${i}`, data: t.bytes, deflate: opts.deflate })),
    { name: `${prefix}/version`, data: Buffer.from('3\n') },
  ]);
}

/**
 * The legacy (torch < 1.6) torch.save format (torch/serialization.py `_legacy_save`): pickles of the
 * magic number, protocol version 1001, sys_info, the state dict, the sorted storage keys; then each
 * storage as an int64 element count and its bytes.
 */
export function legacyTorchBytes(tensors: RawTensor[], statePickle?: Uint8Array): Buffer {
  const keys = tensors.map((_, i) => String(100 + i)); // torch uses str(storage._cdata): sortable here
  const views = tensors.map((t, i) => ({
    name: t.name, dtype: t.dtype, key: keys[i], numel: t.bytes.length / ITEMSIZE[t.dtype], offset: 0,
    size: t.shape, stride: contiguousStride(t.shape),
  }));
  const magic = new Pickle().proto(2).op(0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19).stop();
  const version = new Pickle().proto(2).int(1001).stop();
  const sysInfo = new Pickle().proto(2).emptyDict().mark().str('protocol_version').int(1001).str('little_endian').bool(true)
    .str('type_sizes').emptyDict().mark().str('short').int(2).str('int').int(4).str('long').int(4).setitems().setitems().stop();
  const keyList = new Pickle().proto(2).emptyList().mark();
  for (const k of keys) keyList.str(k);
  keyList.op(0x65).stop();
  const storages = tensors.flatMap((t, i) => {
    const n = Buffer.alloc(8);
    n.writeBigInt64LE(BigInt(views[i].numel));
    return [n, Buffer.from(t.bytes)];
  });
  return Buffer.concat([magic.build_(), version.build_(), sysInfo.build_(), statePickle ?? stateDictPickle(views, true), keyList.build_(), ...storages]);
}

export function writeFile(file: string, data: Uint8Array): string {
  fs.writeFileSync(file, data);
  return file;
}
