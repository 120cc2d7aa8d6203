// What the search routes need from an image index (--db). Kept this small so that the routes do not
// depend on how the index stores its rows; `fromImageIndex` adapts the library's ImageIndex.

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

/** Opens the `altclip index` folder `dir` for the search routes. */
export async function openSearchIndex(dir: string): Promise<SearchIndex> {
  throw new Error(`cannot open ${dir}: the image index (src/search) is not available in this build yet`);
}
