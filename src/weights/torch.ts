// torch.save checkpoints, read as torch/serialization.py `_load` / `_legacy_load` do, minus the code
// execution. Zip format (torch >= 1.6): `<prefix>/data.pkl` is a pickle of the state dict whose
// tensors are rebuilt by `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, ...)`,
// each storage being a persistent id `('storage', torch.<Type>Storage, key, location, numel)` whose
// bytes are the entry `<prefix>/data/<key>` (raw little-endian). The prefix is the file stem for
// torch 1.x and "archive" for torch 2.x, so it is found, not assumed. The legacy format (torch < 1.6)
// holds the same pickle, with the storages appended after it.
import * as fs from 'node:fs';
import { DTYPE_BITS, numelOf, readTensorBytes, type DType, type TensorRef } from './dtype.js';
import { loadPickle, PyGlobal, pyTypeName, unpickle } from './unpickler.js';
import { readZipEntry, ZipFile } from './zip.js';
import { describe } from '../untrusted.js';

/** data.pkl of real checkpoints is well under 10 MB (about 100 bytes per tensor). */
const MAX_PICKLE_BYTES = 256 * 1024 * 1024;

/** torch's legacy typed storage classes (torch/storage.py) and the dtypes they hold. */
const STORAGE_DTYPES: Record<string, DType> = {
  DoubleStorage: 'F64', FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8',
  ByteStorage: 'U8', BoolStorage: 'BOOL',
};

class StorageType extends PyGlobal {
  constructor(name: string, readonly dtype: DType) {
    super('torch', name);
  }
}

interface Storage { key: string; dtype: DType; numel: number }

interface TensorDesc { storage: Storage; storageOffset: number; size: number[]; stride: number[] }

function isTensor(v: unknown): v is TensorDesc {
  return typeof v === 'object' && v !== null && 'storage' in v && 'stride' in v;
}

/** The globals a state dict needs, and nothing that could run code, read files or unpickle again. */
export function stateDictGlobals(source: string): Map<string, PyGlobal> {
  const fail = (problem: string): never => {
    throw new Error(`${source}: ${problem}`);
  };
  const dims = (v: unknown, what: string): number[] => {
    if (!Array.isArray(v) || !v.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`tensor ${what} ${describe(v)} is not a tuple of non-negative ints`);
    return v as number[];
  };
  const tensorArg = (v: unknown, fn: string): TensorDesc => (isTensor(v) ? v : fail(`${fn} expects a tensor, got ${pyTypeName(v)}`));
  // torch/_utils.py: _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None)
  const rebuildTensor = (args: readonly unknown[], fn: string): TensorDesc => {
    const [storage, offset, size, stride] = args;
    if (typeof storage !== 'object' || storage === null || !('numel' in storage)) fail(`${fn}: first argument is a ${pyTypeName(storage)}, not a storage`);
    if (!Number.isSafeInteger(offset) || (offset as number) < 0) fail(`${fn}: storage_offset ${describe(offset)} is not a non-negative int`);
    const shape = dims(size, 'size');
    const strides = dims(stride, 'stride');
    if (shape.length !== strides.length) fail(`${fn}: size has ${shape.length} dims but stride has ${strides.length}`);
    return { storage: storage as Storage, storageOffset: offset as number, size: shape, stride: strides };
  };
  const v2 = new PyGlobal('torch._utils', '_rebuild_tensor_v2', (a) => {
    if (a.length < 6 || a.length > 7) fail(`_rebuild_tensor_v2 takes 6 or 7 arguments, got ${a.length}`);
    return rebuildTensor(a, '_rebuild_tensor_v2');
  });
  const v1 = new PyGlobal('torch._utils', '_rebuild_tensor', (a) => {
    if (a.length !== 4) fail(`_rebuild_tensor takes 4 arguments, got ${a.length}`);
    return rebuildTensor(a, '_rebuild_tensor');
  });
  // nn.Parameter(data, requires_grad): the parameter is its data as far as weights go.
  const param = new PyGlobal('torch._utils', '_rebuild_parameter', (a) => tensorArg(a[0], '_rebuild_parameter'));
  const paramState = new PyGlobal('torch._utils', '_rebuild_parameter_with_state', (a) => tensorArg(a[0], '_rebuild_parameter_with_state'));
  const tensorClass = new PyGlobal('torch', 'Tensor');
  const paramClass = new PyGlobal('torch.nn.parameter', 'Parameter');
  const rebuilders = [v2, v1, param, paramState];
  // torch/_tensor.py: _rebuild_from_type_v2(func, new_type, args, state) = func(*args) cast to new_type;
  // harmless when func is one of the rebuilders above and new_type is Tensor or Parameter.
  const fromType = new PyGlobal('torch._tensor', '_rebuild_from_type_v2', (a) => {
    const [func, newType, args] = a;
    if (!rebuilders.includes(func as PyGlobal)) fail(`_rebuild_from_type_v2 with function ${pyTypeName(func)} is not allowed`);
    if (newType !== tensorClass && newType !== paramClass) fail(`_rebuild_from_type_v2 to type ${pyTypeName(newType)} is not allowed`);
    if (!Array.isArray(args)) fail('_rebuild_from_type_v2 arguments are not a tuple');
    return (func as PyGlobal).call!(args as unknown[]);
  });
  const orderedDict = (a: readonly unknown[]) => {
    if (a.length === 0) return new Map();
    if (a.length === 1 && Array.isArray(a[0]) && a[0].every((p) => Array.isArray(p) && p.length === 2)) {
      return new Map(a[0] as [unknown, unknown][]);
    }
    return fail('collections.OrderedDict called with unsupported arguments');
  };
  // Python 3 pickles bytes at protocol 2 as _codecs.encode(str, "latin1").
  const encode = new PyGlobal('_codecs', 'encode', (a) => {
    const [s, enc] = a;
    if (typeof s !== 'string' || (enc !== 'latin1' && enc !== 'latin-1') || /[^\x00-\xff]/.test(s)) fail('_codecs.encode is only allowed for latin-1 strings');
    return new Uint8Array(Buffer.from(s as string, 'latin1'));
  });
  const all = [
    v2, v1, param, paramState, fromType, tensorClass, paramClass, encode,
    new PyGlobal('collections', 'OrderedDict', orderedDict, orderedDict),
    ...Object.entries(STORAGE_DTYPES).map(([name, dtype]) => new StorageType(name, dtype)),
  ];
  return new Map(all.map((g) => [`${g.module}.${g.name}`, g]));
}

/**
 * The tensors of a torch.save checkpoint (`pytorch_model.bin`), by name, without running its pickle:
 * the zip format (torch >= 1.6), or the legacy format (a sequence of pickles, then the storages).
 */
export function openTorchBin(file: string): Map<string, TensorRef> {
  const real = fs.realpathSync(file);
  if (isLegacyFormat(real)) return readLegacy(file, real);
  const zip = ZipFile.open(real);
  try {
    const stamp = fileStamp(real);
    const tensors = readZip(file, real, zip, crcChecked.get(real) === stamp);
    crcChecked.set(real, stamp);
    return tensors;
  } finally {
    zip.close();
  }
}

/**
 * Files whose stored entries passed their CRC-32 check in this process, with the (size, mtime,
 * inode) they had: opening the same unchanged file again (each tower, a reload) skips the re-read.
 */
const crcChecked = new Map<string, string>();
function fileStamp(file: string): string {
  const st = fs.statSync(file, { bigint: true });
  return `${st.size}:${st.mtimeNs}:${st.ino}`;
}

type Fail = (problem: string) => never;
const failFor = (file: string): Fail => (problem) => {
  throw new Error(`${file}: not a loadable torch checkpoint: ${problem}`);
};

/**
 * torch/serialization.py `persistent_load`: ('storage', storage_type, key, location, numel), plus a
 * sixth item `view_metadata` (None: storage views are long gone) in the legacy format.
 */
function storageLoader(fail: Fail, storages: Map<string, Storage>, legacy: boolean) {
  return (pid: unknown): Storage => {
    const n = legacy ? 6 : 5;
    if (!Array.isArray(pid) || pid.length !== n || pid[0] !== 'storage') {
      fail(`unsupported persistent id (a ${pyTypeName(pid)}, not ('storage', type, key, location, numel${legacy ? ', view_metadata' : ''}))`);
    }
    const [, type, key, , numel, view] = pid as unknown[];
    if (!(type instanceof StorageType)) fail(`storage type ${pyTypeName(type)} is not supported`);
    if (typeof key !== 'string' || !/^[\w.-]+$/.test(key)) fail(`storage key ${describe(key)} is not a plain name`);
    if (!Number.isSafeInteger(numel) || (numel as number) < 0) fail(`storage ${key} has a bad element count ${describe(numel)}`);
    if (legacy && view !== null) fail(`storage ${key} is a storage view, which is not supported`);
    const storage = { key: key as string, dtype: (type as StorageType).dtype, numel: numel as number };
    const seen = storages.get(storage.key);
    if (seen && (seen.dtype !== storage.dtype || seen.numel !== storage.numel)) fail(`storage ${key} is declared twice with different types or sizes`);
    storages.set(storage.key, seen ?? storage);
    return seen ?? storage;
  };
}

/** Where a storage's bytes are: `offset` in the file when stored as is, and its bytes on demand. */
interface StorageLocation { offset: number | null; bytes: () => Uint8Array }

function readZip(file: string, real: string, zip: ZipFile, crcKnownGood: boolean): Map<string, TensorRef> {
  const fail = failFor(file);
  const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkls.length !== 1) fail(pkls.length ? `several data.pkl entries (${pkls.join(', ')})` : 'no <folder>/data.pkl entry');
  const prefix = pkls[0].slice(0, -'data.pkl'.length);
  const byteorder = zip.entries.get(`${prefix}byteorder`);
  if (byteorder && Buffer.from(zip.readEntry(byteorder, 16)).toString() !== 'little') fail('tensors are stored big-endian');

  const source = `${file} (${pkls[0]})`;
  const obj = unpickle(zip.readEntry(zip.entries.get(pkls[0])!, MAX_PICKLE_BYTES), {
    source, globals: stateDictGlobals(source), persistentLoad: storageLoader(fail, new Map(), false),
  });

  // Bytes of compressed entries are read (and inflated) only when a tensor's data is first asked
  // for, which the model does only after the weights' shapes matched its config: a small entry
  // declaring a huge size costs nothing unless the config itself needs that much.
  const inflated = new Map<string, Uint8Array>();
  const checked = new Set<string>();
  const locate = (s: Storage): StorageLocation => {
    const entry = zip.entries.get(`${prefix}data/${s.key}`) ?? fail(`no entry ${prefix}data/${s.key} for storage ${s.key}`);
    const expected = s.numel * (DTYPE_BITS[s.dtype] / 8);
    if (entry.size !== expected) fail(`entry ${entry.name} holds ${entry.size} bytes, but its storage has ${s.numel} ${s.dtype} elements (${expected} bytes)`);
    // Stored entries are used in place (ONNX external data): their CRC-32 is checked here, once.
    if (entry.method === 0 && !crcKnownGood && !checked.has(entry.name)) {
      zip.checkStoredCrc(entry);
      checked.add(entry.name);
    }
    const bytes = () => {
      let b = inflated.get(entry.name);
      if (!b) inflated.set(entry.name, (b = readZipEntry(real, entry)));
      return b;
    };
    return { offset: entry.method === 0 ? entry.dataOffset : null, bytes };
  };
  return tensorRefs(fail, real, obj, locate);
}

/**
 * torch/serialization.py `_legacy_save`: pickles of the magic number, the protocol version (1001)
 * and sys_info, then the object, then the sorted list of storage keys; then each storage as an
 * int64 element count followed by its raw bytes, in that order.
 */
function readLegacy(file: string, real: string): Map<string, TensorRef> {
  const fail = failFor(file);
  const fd = fs.openSync(real, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(size, MAX_PICKLE_BYTES));
    fs.readSync(fd, head, 0, head.length, 0);
    let pos = 0;
    const next = (what: string, globals = new Map<string, PyGlobal>(), persistentLoad?: (pid: unknown) => unknown) => {
      const source = `${file} (${what}, the pickle at byte ${pos})`;
      const r = loadPickle(head.subarray(pos), { source, globals, persistentLoad });
      pos += r.end;
      return r.value;
    };
    if (next('magic number') !== 0x1950a86a20f9469cfc6cn) fail('not a torch.save file (wrong magic number)');
    const protocol = next('protocol version');
    if (protocol !== 1001) fail(`unsupported legacy protocol version ${describe(protocol)}`);
    const sysInfo = next('sys_info');
    if (!(sysInfo instanceof Map) || sysInfo.get('little_endian') !== true) fail('tensors are stored big-endian');
    const storages = new Map<string, Storage>();
    const obj = next('state dict', stateDictGlobals(file), storageLoader(fail, storages, true));
    const keys = next('storage keys');
    if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) fail('the storage key list is not a list of strings');

    const offsets = new Map<string, number>();
    let at = pos;
    const count = Buffer.alloc(8);
    for (const key of keys as string[]) {
      const s = storages.get(key) ?? fail(`storage ${key} is listed but no tensor uses it`);
      if (at + 8 > size || fs.readSync(fd, count, 0, 8, at) !== 8) fail(`file ends before storage ${key} (truncated?)`);
      const n = count.readBigInt64LE(0);
      if (n !== BigInt(s.numel)) fail(`storage ${key} holds ${n} elements, but the pickle declares ${s.numel}`);
      offsets.set(key, at + 8);
      at += 8 + s.numel * (DTYPE_BITS[s.dtype] / 8);
      if (at > size) fail(`storage ${key} runs past the end of the file (truncated?)`);
    }
    const locate = (s: Storage): StorageLocation => {
      const offset = offsets.get(s.key) ?? fail(`storage ${s.key} is not in the storage key list`);
      const byteLength = s.numel * (DTYPE_BITS[s.dtype] / 8);
      return { offset, bytes: () => readTensorBytes({ name: s.key, dtype: s.dtype, shape: [s.numel], file: real, offset, byteLength }) };
    };
    return tensorRefs(fail, real, obj, locate);
  } finally {
    fs.closeSync(fd);
  }
}

/** The state dict's tensors as TensorRefs into `real` (or, for compressed or strided ones, copies). */
function tensorRefs(fail: Fail, real: string, obj: unknown, locate: (s: Storage) => StorageLocation): Map<string, TensorRef> {
  if (!(obj instanceof Map)) fail(`the pickle holds a ${pyTypeName(obj)}, not a state dict`);
  const out = new Map<string, TensorRef>();
  for (const [name, t] of obj as Map<unknown, unknown>) {
    if (typeof name !== 'string') fail(`state dict key ${describe(name)} is not a string`);
    if (!isTensor(t)) fail(`state dict entry ${describe(name)} is a ${pyTypeName(t)}, not a tensor`);
    const { storage, storageOffset, size, stride } = t as TensorDesc;
    const itemsize = DTYPE_BITS[storage.dtype] / 8;
    const numel = numelOf(size) ?? fail(`tensor "${name}" has too many elements`);
    const where = locate(storage);
    const ref: TensorRef = { name: name as string, dtype: storage.dtype, shape: size, file: real, offset: where.offset ?? 0, byteLength: numel * itemsize };
    if (numel === 0) {
      out.set(ref.name, ref);
      continue;
    }
    const view = `tensor "${name}" (offset ${storageOffset}, size [${size}], stride [${stride}])`;
    // Distinct elements at distinct places: a broadcast (stride 0) or overlapping view would make
    // a one-element storage declare any number of elements (torch.save of a state dict writes
    // parameters and buffers, which never overlap).
    if (!nonOverlapping(size, stride)) fail(`${view} has overlapping or broadcast strides`);
    // The last element it reaches must lie inside the storage.
    const last = storageOffset + size.reduce((acc, d, i) => acc + (d - 1) * stride[i], 0);
    if (!(last < storage.numel)) fail(`${view} reaches past its storage of ${storage.numel} elements`);
    if (!isContiguous(size, stride)) {
      // A strided view (e.g. a saved transpose): gathered into a contiguous copy when first used.
      lazyData(ref, () => gather(where.bytes(), itemsize, storageOffset, size, stride, numel));
    } else if (where.offset !== null) {
      ref.offset = where.offset + storageOffset * itemsize;
    } else {
      lazyData(ref, () => where.bytes().subarray(storageOffset * itemsize, (storageOffset + numel) * itemsize));
    }
    out.set(ref.name, ref);
  }
  return out;
}

/**
 * `ref.data`, computed on first access (and kept): a compressed or strided tensor costs no memory
 * or time until something reads it. The property exists from the start, so `Object.hasOwn(ref,
 * 'data')` tells an in-memory tensor without materialising it.
 */
function lazyData(ref: TensorRef, compute: () => Uint8Array): void {
  let data: Uint8Array | undefined;
  Object.defineProperty(ref, 'data', { enumerable: true, get: () => (data ??= compute()) });
}

/**
 * No two index tuples reach the same element: with the dims of size > 1 sorted by stride, each
 * stride is at least the span of the ones below it (so no stride is 0).
 */
function nonOverlapping(size: number[], stride: number[]): boolean {
  const dims = size.map((d, i) => [d, stride[i]]).filter(([d]) => d > 1).sort((a, b) => a[1] - b[1]);
  let span = 1;
  for (const [d, s] of dims) {
    if (s < span) return false;
    span = s * d;
  }
  return true;
}

/** Row-major contiguity, ignoring the stride of size-1 dims (as torch's is_contiguous does). */
function isContiguous(size: number[], stride: number[]): boolean {
  let expected = 1;
  for (let i = size.length - 1; i >= 0; i--) {
    if (size[i] !== 1 && stride[i] !== expected) return false;
    expected *= size[i];
  }
  return true;
}

function gather(src: Uint8Array, itemsize: number, offset: number, size: number[], stride: number[], numel: number): Uint8Array {
  const out = new Uint8Array(numel * itemsize);
  const idx = new Array<number>(size.length).fill(0);
  for (let n = 0; n < numel; n++) {
    let e = offset;
    for (let d = 0; d < size.length; d++) e += idx[d] * stride[d];
    out.set(src.subarray(e * itemsize, (e + 1) * itemsize), n * itemsize);
    for (let d = size.length - 1; d >= 0 && ++idx[d] === size[d]; d--) idx[d] = 0;
  }
  return out;
}

/** The legacy format starts with a pickle (PROTO opcode); zip archives start with "PK". */
function isLegacyFormat(file: string): boolean {
  const head = Buffer.alloc(1);
  const fd = fs.openSync(file, 'r');
  try {
    return fs.readSync(fd, head, 0, 1, 0) === 1 && head[0] === 0x80;
  } finally {
    fs.closeSync(fd);
  }
}
