// What the search routes need from an image index (--db). Kept this small so that the routes do not
// depend on how the index stores its rows; `searchIndexOver` adapts the library's ImageIndex.
// `readIndexedFile` is the one way GET /v1/images/<id> reads a file: the indexed file or nothing.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface SearchHit {
  /** Stable id of the indexed file: GET /v1/images/<id> serves it. */
  id: string;
  /** The file's path as indexed. */
  path: string;
  /** Cosine similarity of the query and the image embedding. */
  score: number;
}

export interface SearchIndex {
  /** The `k` indexed images nearest to a normalised query embedding, best first. */
  search(embedding: Float32Array, k: number): Promise<SearchHit[]>;
  /** The index's row of the file with this id (handed out by `search`); null when there is none. */
  fileOf(id: string): Promise<IndexedFile | null>;
  /** The model (and dtype) the index was built with, as recorded in it. */
  model?: { model: string; dtype: 'fp32' | 'q8' };
  close?(): Promise<void>;
}

/** What the index recorded of a file when it embedded it. */
export interface IndexedFile {
  /** Absolute path as indexed. */
  path: string;
  size: number;
  /** fs.Stats.mtimeMs */
  mtime: number;
  /** hex sha256 of the content */
  sha256: string;
}

/** What the adapter needs of an index: ImageIndex (src/search) has this shape. */
export interface VectorSearcher {
  searchVector(vector: Float32Array, options: { k?: number }): Promise<{ path: string; score: number }[]>;
  /** The stored row of `path` (without its vector). */
  file(path: string): Promise<IndexedFile | undefined>;
  metadata?: { model: string; dtype: 'fp32' | 'q8' };
  close(): Promise<void>;
}

/** Most ids remembered for GET /v1/images/<id> (the oldest handed out are forgotten first). */
export const MAX_SERVED_IDS = 100_000;

/**
 * The search routes over a vector index. A result's id is a hash of its path, and only ids this
 * server handed out in search results resolve: /v1/images/<id> can only ever serve a file the index
 * returned, never another file on disk, whatever the id.
 */
export function searchIndexOver(index: VectorSearcher, maxIds = MAX_SERVED_IDS): SearchIndex {
  const served = new Map<string, string>();
  return {
    async search(embedding, k) {
      const hits = await index.searchVector(embedding, { k });
      return hits.map(({ path, score }) => {
        const id = createHash('sha256').update(path).digest('base64url').slice(0, 22);
        served.delete(id); // re-inserted as the newest
        served.set(id, path);
        if (served.size > maxIds) served.delete(served.keys().next().value!);
        return { id, path, score };
      });
    },
    async fileOf(id) {
      const file = served.get(id);
      return file === undefined ? null : ((await index.file(file)) ?? null);
    },
    model: index.metadata ? { model: index.metadata.model, dtype: index.metadata.dtype } : undefined,
    close: () => index.close(),
  };
}

/**
 * Opens the `altclip index` folder `dir` for the search routes; it must exist, and match the model
 * served when one is named (without: SearchIndex.model says which model to load, as `altclip search` does).
 */
export async function openSearchIndex(dir: string, served: { model?: string; dtype?: 'fp32' | 'q8' } = {}): Promise<SearchIndex> {
  const { ImageIndex } = await import('../search/index.js');
  // With the served model named, ImageIndex refuses an index built with another model or dtype.
  const index = await ImageIndex.open(dir, { model: served.model, dtype: served.dtype });
  if (!index.metadata) {
    await index.close();
    throw new Error(`${dir}: no such index (run "altclip index <folder> --db ${dir}" first)`);
  }
  return searchIndexOver(index);
}

/**
 * The bytes of an indexed file, only if they are still the file the index embedded; else null. The
 * path is opened without following a symlink in its last part (O_NOFOLLOW) and must be a regular file
 * of the recorded size. Its recorded mtime (with no symlink anywhere in the path) is the cheap proof;
 * otherwise, as `altclip index` itself decides, the content's sha256 must be the recorded one: a file
 * replaced by a symlink to /etc/passwd, a FIFO, another file or a folder is never served.
 */
export async function readIndexedFile(row: IndexedFile): Promise<Buffer | null> {
  let link: fs.Stats;
  try {
    link = await fs.promises.lstat(row.path);
  } catch {
    return null;
  }
  const viaLink = link.isSymbolicLink(); // `altclip index` follows symlinks: then only the content can tell
  if (!viaLink && !link.isFile()) return null;
  if (!viaLink && link.size !== row.size) return null;
  const flags = fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | (viaLink ? 0 : fs.constants.O_NOFOLLOW);
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(row.path, flags);
  } catch {
    return null;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile() || st.size !== row.size) return null;
    if (!viaLink && (st.ino !== link.ino || st.dev !== link.dev)) return null; // swapped since the lstat
    const data = Buffer.alloc(row.size);
    let filled = 0;
    while (filled < data.length) {
      const { bytesRead } = await handle.read(data, filled, data.length - filled, filled);
      if (bytesRead === 0) return null; // shrunk meanwhile
      filled += bytesRead;
    }
    const plainPath = !viaLink && (await realDir(row.path)) === path.dirname(row.path);
    if (plainPath && st.mtimeMs === row.mtime) return data;
    return createHash('sha256').update(data).digest('hex') === row.sha256 ? data : null;
  } finally {
    await handle.close();
  }
}

async function realDir(file: string): Promise<string | null> {
  try {
    return await fs.promises.realpath(path.dirname(file));
  } catch {
    return null;
  }
}
