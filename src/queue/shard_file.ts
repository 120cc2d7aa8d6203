// Shard files: what a worker writes to the work folder for one finished shard, and the coordinator
// reads back to append to the index. One file per shard, named by the shard id, written to a temporary
// name, fsynced and renamed (atomic on POSIX file systems, NFS included): a reader sees the whole file
// or none, and a re-delivered job that writes it again replaces it with the same rows.
//
// Layout: "ALTCLIPSHARD1\n" | uint32 LE header length | header JSON (UTF-8) | rows x dim float32 LE.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ModelIdentity } from '../tasks/types.js';

const MAGIC = Buffer.from('ALTCLIPSHARD1\n', 'latin1');

/** One embedded image: the index's row without its vector. */
export interface ShardRow {
  /** absolute path, URL, or `<tar path>#<member name>` */
  path: string;
  size: number;
  /** ms since the epoch (a URL: 0) */
  mtime: number;
  sha256: string;
}

export interface ShardHeader {
  format: 'altclip-shard';
  version: 1;
  shard: string;
  identity: ModelIdentity;
  rows: ShardRow[];
  skipped: { input: string; error: string }[];
  /** host:pid of the worker that wrote it */
  worker: string;
}

export interface ShardData extends ShardHeader {
  /** rows.length x identity.projectionDim */
  vectors: Float32Array;
}

export function shardFileName(workDir: string, shard: string): string {
  return path.join(workDir, 'shards', `${shard}.shard`);
}

/** Writes the shard atomically (temp file, fsync, rename, fsync of the folder). */
export async function writeShardFile(file: string, data: ShardData): Promise<void> {
  const { vectors, ...header } = data;
  const dim = header.identity.projectionDim;
  if (vectors.length !== header.rows.length * dim) throw new Error(`shard ${header.shard}: ${vectors.length} values for ${header.rows.length} rows of ${dim}`);
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  const body = Buffer.from(vectors.buffer, vectors.byteOffset, vectors.byteLength);
  if (os.endianness() !== 'LE') throw new Error('shard files are little-endian; this machine is not');
  const dir = path.dirname(file);
  await fs.promises.mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.${os.hostname()}-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  const fh = await fs.promises.open(tmp, 'w');
  try {
    await fh.writev([MAGIC, len, json, body]);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await fs.promises.rename(tmp, file);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
  const dh = await fs.promises.open(dir, 'r');
  try {
    await dh.sync();
  } catch {
    // some file systems refuse fsync on a folder: the rename is still atomic
  } finally {
    await dh.close();
  }
}

/** Reads and checks a shard file; every inconsistency is an error naming the file. */
export async function readShardFile(file: string): Promise<ShardData> {
  const buf = await fs.promises.readFile(file);
  const bad = (why: string) => new Error(`${file}: damaged shard file (${why})`);
  if (buf.length < MAGIC.length + 4 || !buf.subarray(0, MAGIC.length).equals(MAGIC)) throw bad('not an altclip shard file');
  const n = buf.readUInt32LE(MAGIC.length);
  const start = MAGIC.length + 4;
  if (start + n > buf.length) throw bad('header runs past the end');
  let header: ShardHeader;
  try {
    header = JSON.parse(buf.toString('utf8', start, start + n)) as ShardHeader;
  } catch {
    throw bad('header is not JSON');
  }
  if (header.format !== 'altclip-shard' || header.version !== 1 || !Array.isArray(header.rows) || !header.identity) throw bad('unknown header');
  const dim = header.identity.projectionDim;
  const bytes = buf.length - start - n;
  if (bytes !== header.rows.length * dim * 4) throw bad(`${bytes} vector bytes for ${header.rows.length} rows of ${dim} float32`);
  const vectors = new Float32Array(header.rows.length * dim);
  new Uint8Array(vectors.buffer).set(buf.subarray(start + n));
  return { ...header, vectors };
}

/** Whether a complete shard file exists (a damaged one does not count). */
export async function shardFileDone(file: string): Promise<boolean> {
  try {
    await readShardFile(file);
    return true;
  } catch {
    return false;
  }
}
