// .npy output (NumPy format version 1.0, https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
// magic "\x93NUMPY", version 1.0, little-endian uint16 header length, a Python dict literal padded with
// spaces and ended by "\n" so that the data starts on a 64-byte boundary, then the raw C-order data.
// The header is written with room to spare so rows can be appended and the shape rewritten in place.
import * as fs from 'node:fs';
import * as os from 'node:os';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY
/** Magic + version + length field + dict: one 128-byte block leaves room for any (rows, cols). */
const HEADER_BYTES = 128;

export function npyHeader(rows: number, cols: number): Buffer {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  const dictBytes = HEADER_BYTES - 10;
  if (dict.length + 1 > dictBytes) throw new Error(`shape (${rows}, ${cols}) does not fit the .npy header`);
  const header = Buffer.alloc(HEADER_BYTES, 0x20);
  MAGIC.copy(header, 0);
  header[6] = 1; // major version
  header[7] = 0; // minor version
  header.writeUInt16LE(dictBytes, 8);
  header.write(dict, 10, 'latin1');
  header[HEADER_BYTES - 1] = 0x0a;
  return header;
}

export interface NpyHeader {
  rows: number;
  cols: number;
  /** Bytes before the data. */
  dataOffset: number;
}

/** The header of a 2-D float32 C-order .npy file (version 1.0 or 2.0); anything else is an error. */
export function readNpyHeader(file: string): NpyHeader {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(12);
    const n = fs.readSync(fd, head, 0, 12, 0);
    if (n < 10 || !head.subarray(0, 6).equals(MAGIC)) throw new Error(`${file}: not a .npy file`);
    const major = head[6];
    const lenBytes = major === 1 ? 2 : 4;
    const dictLen = major === 1 ? head.readUInt16LE(8) : head.readUInt32LE(8);
    const dictStart = 8 + lenBytes;
    const dictBuf = Buffer.alloc(dictLen);
    fs.readSync(fd, dictBuf, 0, dictLen, dictStart);
    const dict = dictBuf.toString('latin1');
    const descr = /'descr':\s*'([^']*)'/.exec(dict)?.[1];
    const fortran = /'fortran_order':\s*(True|False)/.exec(dict)?.[1];
    const shape = /'shape':\s*\(\s*(\d+)\s*,\s*(\d+)\s*,?\s*\)/.exec(dict);
    if (descr !== '<f4' || fortran !== 'False' || !shape) {
      throw new Error(`${file}: not a 2-D float32 C-order .npy file (header ${dict.trim()})`);
    }
    return { rows: Number(shape[1]), cols: Number(shape[2]), dataOffset: dictStart + dictLen };
  } finally {
    fs.closeSync(fd);
  }
}

/** A [rows, cols] float32 .npy file that grows by appending rows. */
export class NpyAppender {
  private constructor(
    readonly file: string,
    private fd: number,
    readonly cols: number,
    public rows: number,
  ) {}

  /** A new file with 0 rows (replaces any existing file). */
  static create(file: string, cols: number): NpyAppender {
    const fd = fs.openSync(file, 'w');
    fs.writeSync(fd, npyHeader(0, cols), 0, HEADER_BYTES, 0);
    return new NpyAppender(file, fd, cols, 0);
  }

  /** An existing file written by create(), cut to its first `keepRows` rows (at most what it holds). */
  static open(file: string, keepRows = Infinity): NpyAppender {
    const h = readNpyHeader(file);
    if (h.dataOffset !== HEADER_BYTES) throw new Error(`${file}: .npy header was not written by altclip; cannot append to it`);
    const rowBytes = h.cols * 4;
    const present = Math.floor((fs.statSync(file).size - h.dataOffset) / rowBytes);
    const rows = Math.min(h.rows, present, keepRows);
    const fd = fs.openSync(file, 'r+');
    fs.ftruncateSync(fd, h.dataOffset + rows * rowBytes);
    fs.writeSync(fd, npyHeader(rows, h.cols), 0, HEADER_BYTES, 0);
    return new NpyAppender(file, fd, h.cols, rows);
  }

  /** Appends rows (row-major, a multiple of `cols` values); the header is rewritten after the data. */
  append(data: Float32Array): void {
    if (data.length % this.cols !== 0) throw new Error(`${data.length} values are not whole rows of ${this.cols}`);
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (os.endianness() !== 'LE') bytes.swap32();
    fs.writeSync(this.fd, bytes, 0, bytes.length, HEADER_BYTES + this.rows * this.cols * 4);
    this.rows += data.length / this.cols;
    fs.writeSync(this.fd, npyHeader(this.rows, this.cols), 0, HEADER_BYTES, 0);
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}
