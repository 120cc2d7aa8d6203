// The browser build's `node:fs`: a read-only file system of byte ranges, so that the checkpoint
// parsers (safetensors header, the .bin's zip directory and restricted unpickler, dtype reads) run
// in the page unchanged. A file is either remote (its size known, bytes fetched by HTTP Range and
// added as they arrive) or held whole in memory (one tensor each, once downloaded).
//
// The parsers read synchronously; fetching is not. A read of bytes not fetched yet fails with
// MissingBytes and records what was missing; `withRanges` fetches it and runs the parser again
// (parsing a header is cheap; each round adds at least RANGE_BLOCK bytes).
//
// Every other `fs` function throws: nothing in the page may write or list files.

/** Bytes fetched per missing read at least (a safetensors header or a zip directory in one go). */
const RANGE_BLOCK = 256 * 1024;

interface VirtualFile {
  size: number;
  /** Fetched pieces, sorted by start, not overlapping. */
  pieces: { start: number; bytes: Uint8Array }[];
}

export class MissingBytes extends Error {
  constructor(readonly file: string, readonly start: number, readonly end: number) {
    super(`${file}: bytes ${start}..${end} are not fetched yet`);
  }
}

const files = new Map<string, VirtualFile>();
const fds = new Map<number, string>();
let nextFd = 3;
let lastMiss: MissingBytes | null = null;

/** A remote file of `size` bytes; its ranges come from addRange. */
export function mountRemote(file: string, size: number): void {
  if (!files.has(file) || files.get(file)!.size !== size) files.set(file, { size, pieces: [] });
}

/** A file held whole in memory. */
export function mountBytes(file: string, bytes: Uint8Array): void {
  files.set(file, { size: bytes.length, pieces: [{ start: 0, bytes }] });
}

export function unmount(file: string): void {
  files.delete(file);
}

/** The bytes of a file held whole (mountBytes). */
export function fileBytes(file: string): Uint8Array {
  const f = files.get(file);
  const piece = f?.pieces[0];
  if (!f || !piece || piece.start !== 0 || piece.bytes.length !== f.size) throw new Error(`${file}: not in memory`);
  return piece.bytes;
}

export function addRange(file: string, start: number, bytes: Uint8Array): void {
  const f = files.get(file);
  if (!f) throw new Error(`${file}: not mounted`);
  // keep the pieces disjoint: drop what the new piece covers, then insert it in order
  const end = start + bytes.length;
  f.pieces = f.pieces.filter((p) => p.start < start || p.start + p.bytes.length > end);
  f.pieces.push({ start, bytes });
  f.pieces.sort((a, b) => a.start - b.start);
}

/** Copies [position, position + length) of `file` into `out` at `at`; false if a byte is missing. */
function copyRange(f: VirtualFile, position: number, length: number, out: Uint8Array, at: number): boolean {
  let pos = position;
  const end = position + length;
  for (const p of f.pieces) {
    const pEnd = p.start + p.bytes.length;
    if (pEnd <= pos || p.start > pos) continue;
    const take = Math.min(end, pEnd) - pos;
    out.set(p.bytes.subarray(pos - p.start, pos - p.start + take), at + (pos - position));
    pos += take;
    if (pos >= end) return true;
  }
  return pos >= end;
}

function enoent(file: string): Error {
  return Object.assign(new Error(`ENOENT: no such file, open '${file}'`), { code: 'ENOENT' });
}

export function realpathSync(file: string): string {
  if (!files.has(file)) throw enoent(file);
  return file;
}

export function existsSync(file: string): boolean {
  return files.has(file);
}

export function openSync(file: string): number {
  if (!files.has(file)) throw enoent(file);
  const fd = nextFd++;
  fds.set(fd, file);
  return fd;
}

export function closeSync(fd: number): void {
  fds.delete(fd);
}

export function fstatSync(fd: number): { size: number } {
  const file = fds.get(fd);
  if (file === undefined) throw new Error(`EBADF: bad file descriptor ${fd}`);
  return { size: files.get(file)!.size };
}

export function statSync(file: string): { size: number; isDirectory(): boolean; isFile(): boolean } {
  const f = files.get(file);
  if (!f) throw enoent(file);
  return { size: f.size, isDirectory: () => false, isFile: () => true };
}

/** fs.readSync(fd, buffer, offset, length, position): bytes past the end are not read (returns fewer). */
export function readSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number {
  const file = fds.get(fd);
  if (file === undefined) throw new Error(`EBADF: bad file descriptor ${fd}`);
  const f = files.get(file)!;
  const n = Math.max(0, Math.min(length, f.size - position));
  if (n === 0) return 0;
  if (!copyRange(f, position, n, buffer, offset)) {
    lastMiss = new MissingBytes(file, position, position + n);
    throw lastMiss;
  }
  return n;
}

/** Runs `parse` (synchronous, reading through this module) until every byte it reads is there. */
export async function withRanges<T>(parse: () => T, fetchRange: (file: string, start: number, end: number) => Promise<Uint8Array>,
  maxRounds = 100_000): Promise<T> {
  for (let round = 0; round < maxRounds; round++) {
    lastMiss = null;
    try {
      return parse();
    } catch (e) {
      // the parsers may wrap the error: the recorded miss is what counts
      const miss = lastMiss as MissingBytes | null;
      if (!miss) throw e;
      const size = files.get(miss.file)!.size;
      const end = Math.min(size, Math.max(miss.end, miss.start + RANGE_BLOCK));
      addRange(miss.file, miss.start, await fetchRange(miss.file, miss.start, end));
    }
  }
  throw new Error(`gave up reading the checkpoint's directory after ${maxRounds} range requests`);
}

function unavailable(name: string): () => never {
  return () => {
    throw new Error(`fs.${name} is not available in the browser build of altclip`);
  };
}

export const readFileSync = unavailable('readFileSync');
export const writeFileSync = unavailable('writeFileSync');
export const mkdirSync = unavailable('mkdirSync');
export const renameSync = unavailable('renameSync');
export const rmSync = unavailable('rmSync');
export const linkSync = unavailable('linkSync');
export const readdirSync = unavailable('readdirSync');
export const writeSync = unavailable('writeSync');
export const fsyncSync = unavailable('fsyncSync');
export const createWriteStream = unavailable('createWriteStream');
export const createReadStream = unavailable('createReadStream');
export const promises = new Proxy({}, { get: (_t, name) => unavailable(`promises.${String(name)}`) });
