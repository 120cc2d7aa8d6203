// A minimal zip reader for torch.save archives: reads the central directory (zip64 included) and
// each entry's local header to find where its bytes start, without extracting anything. Stored
// entries are addressed in place; deflated ones are inflated one at a time on request.
// Layout per APPNOTE.TXT (PKWARE): local headers, central directory, [zip64 EOCD + locator], EOCD.
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { MAX_READ } from './dtype.js';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflated. */
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  /** Offset of the entry's (possibly compressed) bytes in the file, past its local header. */
  dataOffset: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
/** Central directories of real checkpoints are a few hundred KB; refuse absurd ones. */
const MAX_CENTRAL_DIR = 256 * 1024 * 1024;

export class ZipFile {
  readonly entries = new Map<string, ZipEntry>();
  readonly size: number;

  private constructor(readonly file: string, private readonly fd: number) {
    this.size = fs.fstatSync(fd).size;
  }

  /** Opens `file` and reads its directory; throws an error naming the file for anything malformed. */
  static open(file: string): ZipFile {
    const fd = fs.openSync(file, 'r');
    const zip = new ZipFile(file, fd);
    try {
      zip.readDirectory();
    } catch (e) {
      zip.close();
      throw e;
    }
    return zip;
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  private fail(problem: string): never {
    throw new Error(`${this.file}: not a valid zip archive: ${problem}`);
  }

  private read(position: number, length: number): Buffer {
    return readRange(this.fd, this.size, position, length, (problem) => this.fail(problem));
  }

  private readDirectory(): void {
    // The end-of-central-directory record is 22 bytes plus a comment of up to 65535 bytes.
    const tailLen = Math.min(this.size, 22 + 65535);
    const tail = this.read(this.size - tailLen, tailLen);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === EOCD_SIG && i + 22 + tail.readUInt16LE(i + 20) === tailLen) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) this.fail('no end-of-central-directory record (truncated, or not a zip file)');
    const eocdPos = this.size - tailLen + eocd;
    if (tail.readUInt16LE(eocd + 4) !== 0 || tail.readUInt16LE(eocd + 6) !== 0) this.fail('multi-disk archives are not supported');
    let count = tail.readUInt16LE(eocd + 10);
    let cdSize = tail.readUInt32LE(eocd + 12);
    let cdOffset = tail.readUInt32LE(eocd + 16);
    let cdEnd = eocdPos;

    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      // zip64: a locator right before the EOCD points at the zip64 EOCD record.
      if (eocdPos < 20) this.fail('zip64 locator missing');
      const loc = this.read(eocdPos - 20, 20);
      if (loc.readUInt32LE(0) !== ZIP64_LOCATOR_SIG) this.fail('zip64 locator missing');
      const z64Pos = this.u64(loc, 8, 'zip64 EOCD offset');
      const z64 = this.read(z64Pos, 56);
      if (z64.readUInt32LE(0) !== ZIP64_EOCD_SIG) this.fail('zip64 end-of-central-directory record missing');
      count = this.u64(z64, 32, 'entry count');
      cdSize = this.u64(z64, 40, 'central directory size');
      cdOffset = this.u64(z64, 48, 'central directory offset');
      cdEnd = z64Pos;
    }
    if (cdSize > MAX_CENTRAL_DIR) this.fail(`central directory of ${cdSize} bytes is implausibly large`);
    if (cdOffset + cdSize > cdEnd) this.fail(`central directory (bytes ${cdOffset}..${cdOffset + cdSize}) runs past its end record (truncated?)`);
    if (count * 46 > cdSize) this.fail(`${count} entries cannot fit a central directory of ${cdSize} bytes`);

    const cd = this.read(cdOffset, cdSize);
    const localOffsets: { entry: ZipEntry; local: number }[] = [];
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL_SIG) this.fail(`central directory entry ${i} is malformed`);
      const flags = cd.readUInt16LE(p + 8);
      const method = cd.readUInt16LE(p + 10);
      const crc32 = cd.readUInt32LE(p + 16);
      let compressedSize = cd.readUInt32LE(p + 20);
      let size = cd.readUInt32LE(p + 24);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      let local = cd.readUInt32LE(p + 42);
      const recordEnd = p + 46 + nameLen + extraLen + commentLen;
      if (recordEnd > cd.length) this.fail(`central directory entry ${i} runs past the directory`);
      const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
      checkEntryName(name, (problem) => this.fail(`entry ${JSON.stringify(name)}: ${problem}`));
      if (flags & 1) this.fail(`entry ${name} is encrypted`);
      // zip64 extended information (0x0001) holds the fields that read as 0xffffffff, in this order.
      for (let e = p + 46 + nameLen; e + 4 <= p + 46 + nameLen + extraLen;) {
        const id = cd.readUInt16LE(e);
        const len = cd.readUInt16LE(e + 2);
        if (id === 0x0001) {
          let q = e + 4;
          const next = (what: string) => {
            if (q + 8 > e + 4 + len) this.fail(`entry ${name}: zip64 field lacks the ${what}`);
            const v = this.u64(cd, q, what);
            q += 8;
            return v;
          };
          if (size === 0xffffffff) size = next('size');
          if (compressedSize === 0xffffffff) compressedSize = next('compressed size');
          if (local === 0xffffffff) local = next('local header offset');
        }
        e += 4 + len;
      }
      if (method !== 0 && method !== 8) this.fail(`entry ${name} uses compression method ${method} (only stored and deflate are supported)`);
      if (method === 0 && compressedSize !== size) this.fail(`stored entry ${name} has compressed size ${compressedSize} but size ${size}`);
      if (method === 8 && size > compressedSize * MAX_DEFLATE_RATIO + 64) {
        this.fail(`entry ${name} declares ${size} bytes, more than its ${compressedSize} deflated bytes can hold (at most ${MAX_DEFLATE_RATIO}:1)`);
      }
      if (this.entries.has(name)) this.fail(`entry ${name} appears twice`);
      const entry: ZipEntry = { name, method, crc32, compressedSize, size, dataOffset: -1 };
      this.entries.set(name, entry);
      localOffsets.push({ entry, local });
      p = recordEnd;
    }

    // Each local header must match its directory entry; entries must not overlap each other or the directory.
    localOffsets.sort((a, b) => a.local - b.local);
    let prevEnd = 0;
    for (const { entry, local } of localOffsets) {
      if (local < prevEnd) this.fail(`entry ${entry.name} overlaps the previous entry`);
      const h = this.read(local, 30);
      if (h.readUInt32LE(0) !== LOCAL_SIG) this.fail(`entry ${entry.name}: no local header at byte ${local}`);
      const nameLen = h.readUInt16LE(26);
      const extraLen = h.readUInt16LE(28);
      if (this.read(local + 30, nameLen).toString('utf8') !== entry.name) this.fail(`entry ${entry.name}: local header names another file`);
      entry.dataOffset = local + 30 + nameLen + extraLen;
      prevEnd = entry.dataOffset + entry.compressedSize;
      if (prevEnd > cdOffset) this.fail(`entry ${entry.name} (${entry.compressedSize} bytes at ${entry.dataOffset}) runs into the central directory (truncated or inconsistent sizes)`);
    }
  }

  private u64(buf: Buffer, at: number, what: string): number {
    const v = buf.readBigUInt64LE(at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} ${v} is out of range`);
    return Number(v);
  }

  /** An entry's bytes, inflated if needed (checked against the directory's size and CRC-32). */
  readEntry(entry: ZipEntry, maxBytes = Infinity): Uint8Array {
    return readEntryBytes(this.fd, this.file, this.size, entry, maxBytes);
  }

  /**
   * Checks a stored entry's CRC-32 in place, reading it in chunks (what is used in place as ONNX
   * external data is otherwise never checked).
   */
  checkStoredCrc(entry: ZipEntry): void {
    if (entry.method !== 0) throw new Error(`${entry.name} is not a stored entry`);
    const chunk = Buffer.allocUnsafe(Math.min(CRC_CHUNK, Math.max(1, entry.size)));
    let crc = 0;
    for (let done = 0; done < entry.size;) {
      const n = Math.min(chunk.length, entry.size - done);
      const got = fs.readSync(this.fd, chunk, 0, n, entry.dataOffset + done);
      if (got === 0) this.fail(`file ends inside entry ${entry.name} (truncated?)`);
      crc = crc32(chunk.subarray(0, got), crc);
      done += got;
    }
    if (crc !== entry.crc32) this.fail(`entry ${entry.name} fails its CRC-32 check (corrupt)`);
  }
}

const CRC_CHUNK = 16 * 1024 * 1024;

/**
 * Deflate expands at most 1032:1 (a 258-byte match per 2 bits, RFC 1951); a declared size beyond
 * that cannot be honest, so it is refused before anything is inflated.
 */
export const MAX_DEFLATE_RATIO = 1032;

function readRange(fd: number, size: number, position: number, length: number, fail: (problem: string) => never): Buffer {
  if (position < 0 || position + length > size) fail(`a record at byte ${position} runs past the end of the file (truncated?)`);
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, Math.min(length - done, MAX_READ), position + done);
    if (n === 0) fail(`file ends at byte ${position + done} (truncated?)`);
    done += n;
  }
  return buf;
}

function readEntryBytes(fd: number, file: string, size: number, entry: ZipEntry, maxBytes: number): Uint8Array {
  const fail = (problem: string): never => {
    throw new Error(`${file}: not a valid zip archive: ${problem}`);
  };
  if (entry.size > maxBytes) fail(`entry ${entry.name} is ${entry.size} bytes, over the ${maxBytes}-byte limit`);
  const raw = readRange(fd, size, entry.dataOffset, entry.compressedSize, fail);
  let data: Buffer = raw;
  if (entry.method === 8) {
    try {
      data = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
    } catch (e) {
      fail(`entry ${entry.name} does not inflate to its declared ${entry.size} bytes (${(e as Error).message})`);
    }
  }
  if (data.length !== entry.size) fail(`entry ${entry.name} holds ${data.length} bytes, not the declared ${entry.size}`);
  if (crc32(data) !== entry.crc32) fail(`entry ${entry.name} fails its CRC-32 check (corrupt)`);
  return data;
}

/**
 * An entry's bytes read from `file` later, after its ZipFile was closed (lazy inflation): the file
 * is opened for this read only; the size and CRC-32 checks catch a file changed in between.
 */
export function readZipEntry(file: string, entry: ZipEntry, maxBytes = Infinity): Uint8Array {
  const fd = fs.openSync(file, 'r');
  try {
    return readEntryBytes(fd, file, fs.fstatSync(fd).size, entry, maxBytes);
  } finally {
    fs.closeSync(fd);
  }
}

/** Refuses names that could escape a folder if extracted ("zip slip") or are otherwise odd. */
function checkEntryName(name: string, fail: (problem: string) => never): void {
  if (name.length === 0) fail('empty name');
  if (name.includes('\0')) fail('name contains a NUL byte');
  if (name.includes('\\')) fail('name contains a backslash');
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) fail('absolute path');
  if (name.split('/').some((seg) => seg === '..')) fail('path escapes the archive folder ("..")');
}

let crcTable: Uint32Array | undefined;
/** CRC-32 (zip's), continuing from `prev` (the CRC of the bytes before `data`): zlib's (Node >= 20.15), else in JS. */
export function crc32(data: Uint8Array, prev = 0): number {
  if (typeof zlib.crc32 === 'function') return zlib.crc32(data, prev);
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = (prev ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
