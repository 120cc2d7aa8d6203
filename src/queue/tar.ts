// A bounded reader for WebDataset shards: the POSIX ustar / pax / GNU tar files that img2dataset
// (Python's tarfile, PAX_FORMAT by default) and GNU tar write. Only what a shard holds is read: regular
// files, their names (ustar prefix + name, pax `path`, GNU ././@LongLink) and mtimes. Anything that
// does not add up (bad header checksum, a member running past the end of the file, a size field that
// is not octal) is an error naming the tar and the byte offset; nothing is trusted beyond the file.
//
// No dependency: the format is 512-byte blocks (POSIX.1-2001 "pax Interchange Format", ustar header
// layout), and this file needs ~100 lines of it.
import * as fs from 'node:fs';

const BLOCK = 512;
/** Larger members are refused: an image in a shard is kilobytes to a few megabytes. */
export const MAX_TAR_MEMBER_BYTES = 256 * 1024 * 1024;

export interface TarMember {
  name: string;
  /** seconds since the epoch (the header's mtime; pax `mtime` when given) */
  mtime: number;
  data: Uint8Array;
}

/** The regular files of `file`, in order. */
export async function* readTar(file: string): AsyncGenerator<TarMember> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    let offset = 0;
    let pax: Record<string, string> = {};
    let longName: string | undefined;
    const read = async (length: number, at: number): Promise<Buffer> => {
      if (at + length > size) throw new Error(`${file}: truncated tar (a member at byte ${at} needs ${length} bytes, the file ends at ${size})`);
      const buf = Buffer.alloc(length);
      const { bytesRead } = await fh.read(buf, 0, length, at);
      if (bytesRead !== length) throw new Error(`${file}: truncated tar (short read at byte ${at})`);
      return buf;
    };
    for (;;) {
      if (offset === size) throw new Error(`${file}: truncated tar (no end-of-archive blocks after byte ${offset})`);
      const header = await read(BLOCK, offset);
      if (header.every((b) => b === 0)) return; // end of archive (two zero blocks; the first is enough)
      checkChecksum(file, header, offset);
      const type = String.fromCharCode(header[156]!);
      const length = octal(file, header, 124, 12, offset);
      if (length > MAX_TAR_MEMBER_BYTES) throw new Error(`${file}: tar member at byte ${offset} claims ${length} bytes (limit ${MAX_TAR_MEMBER_BYTES})`);
      const dataAt = offset + BLOCK;
      offset = dataAt + Math.ceil(length / BLOCK) * BLOCK;
      if (offset > size) throw new Error(`${file}: truncated tar (the member at byte ${dataAt - BLOCK} needs ${length} bytes, the file ends at ${size})`);
      if (type === 'x') {
        pax = { ...pax, ...parsePax(file, await read(length, dataAt), dataAt) };
        continue;
      }
      if (type === 'g') continue; // global pax header: nothing a shard needs
      if (type === 'L') {
        longName = cString(await read(length, dataAt), 0, length);
        continue;
      }
      const name = pax.path ?? longName ?? ustarName(header);
      const mtime = pax.mtime !== undefined ? Number(pax.mtime) : octal(file, header, 136, 12, dataAt - BLOCK);
      pax = {};
      longName = undefined;
      if (type !== '0' && type !== '\0') continue; // folders, links, devices: not images
      yield { name, mtime, data: await read(length, dataAt) };
    }
  } finally {
    await fh.close();
  }
}

function cString(buf: Buffer, start: number, length: number): string {
  const end = buf.indexOf(0, start);
  return buf.toString('utf8', start, end === -1 || end > start + length ? start + length : end);
}

function ustarName(header: Buffer): string {
  const name = cString(header, 0, 100);
  const magic = header.toString('latin1', 257, 262);
  const prefix = magic === 'ustar' ? cString(header, 345, 155) : '';
  return prefix ? `${prefix}/${name}` : name;
}

function octal(file: string, header: Buffer, start: number, length: number, at: number): number {
  // GNU base-256 for sizes >= 8 GiB: far past MAX_TAR_MEMBER_BYTES anyway.
  if (header[start]! & 0x80) throw new Error(`${file}: tar header at byte ${at}: base-256 number field (member too large)`);
  const text = cString(header, start, length).trim();
  if (!/^[0-7]*$/.test(text)) throw new Error(`${file}: tar header at byte ${at} is damaged (field ${JSON.stringify(text)} is not octal)`);
  return text === '' ? 0 : parseInt(text, 8);
}

function checkChecksum(file: string, header: Buffer, at: number): void {
  // ustar: the unsigned sum of the header with the checksum field taken as 8 spaces.
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : header[i]!;
  const field = cString(header, 148, 8).trim();
  if (!/^[0-7]+$/.test(field) || parseInt(field, 8) !== sum) throw new Error(`${file}: not a tar file, or damaged (header checksum mismatch at byte ${at})`);
}

/** pax records: "<length> <key>=<value>\n". */
function parsePax(file: string, buf: Buffer, at: number): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < buf.length) {
    const space = buf.indexOf(0x20, pos);
    const len = Number(buf.toString('latin1', pos, space));
    if (space === -1 || !Number.isInteger(len) || len <= 0 || pos + len > buf.length) {
      throw new Error(`${file}: damaged pax header at byte ${at + pos}`);
    }
    const record = buf.toString('utf8', space + 1, pos + len - 1);
    const eq = record.indexOf('=');
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    pos += len;
  }
  return out;
}
