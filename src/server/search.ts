// What the search routes need from an image index (--db). Kept this small so that the routes do not
// depend on how the index stores its rows; `searchIndexOver` adapts the library's ImageIndex.
import { createHash } from 'node:crypto';

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
  /** The absolute path of the indexed file with this id; null when no indexed file has it. */
  pathOf(id: string): Promise<string | null>;
  close?(): Promise<void>;
}

/** What the adapter needs of an index: ImageIndex (src/search) has this shape. */
export interface VectorSearcher {
  searchVector(vector: Float32Array, options: { k?: number }): Promise<{ path: string; score: number }[]>;
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
    async pathOf(id) {
      return served.get(id) ?? null;
    },
    close: () => index.close(),
  };
}

/** Opens the `altclip index` folder `dir` for the search routes; it must exist and match the model served. */
export async function openSearchIndex(dir: string, served: { model: string; dtype?: 'fp32' | 'q8' }): Promise<SearchIndex> {
  const { ImageIndex } = await import('../search/index.js');
  // With the served model named, ImageIndex refuses an index built with another model or dtype.
  const index = await ImageIndex.open(dir, { model: served.model, dtype: served.dtype });
  if (!index.metadata) {
    await index.close();
    throw new Error(`${dir}: no such index (run "altclip index <folder> --db ${dir}" first)`);
  }
  return searchIndexOver(index);
}
