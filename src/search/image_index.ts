// ImageIndex: a folder of images searchable by text (in any of AltCLIP's languages) or by image.
//
//   const index = await ImageIndex.open('photos.db', { model: 'BAAI/AltCLIP' });
//   await index.sync(['~/Pictures']);                 // embeds new/changed images, drops deleted ones
//   await index.search('一只在沙发上睡觉的猫', { k: 5 }); // [{ path, score }], best first
//   await index.close();
//
// A score is the cosine of the normalised query embedding and the normalised image embedding, computed
// as imageTextSimilarity computes it (float64 dot product of the two float32 unit vectors); the store
// only proposes the candidates.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ImageInput } from '../image/index.js';
import type { ModelOptions } from '../models/altclip.js';
import { type ModelFingerprint, fingerprintChanges, modelFingerprint, type ResolvedModel, resolveModel } from '../models/fingerprint.js';
import { embedImageBatches, embedTextBatches } from '../tasks/embeddings.js';
import { loadAltCLIP } from '../tasks/pipeline.js';
import type { AltCLIPParts, ModelIdentity } from '../tasks/types.js';
import { type FileState, isInside, sha256File, statFile, walkImages } from './files.js';
import { WriterLock } from './lock.js';
import { type AnnOptions, FORMAT, ImageStore, type IndexMetadata, IndexFolderError, SCHEMA_VERSION, type StoredFile, type StoredRow } from './store.js';

type Parts = AltCLIPParts;

export interface ImageIndexOptions extends ModelOptions {
  /**
   * The model (hub repo id or local folder). Needed to create an index (default BAAI/AltCLIP); for an
   * existing index it defaults to the one recorded in it, and another one is refused.
   */
  model?: string;
  /** Images per model call when indexing (default 8). */
  batchSize?: number;
  /** An already loaded model to use (its identity must match the index's). */
  clip?: AltCLIPParts;
  /** How long a writer waits for another writer's lock, in ms (default 0: refuse at once). */
  lockWaitMs?: number;
  /** Approximate-index settings (row count that triggers it, probes, re-ranking). */
  ann?: Partial<AnnOptions>;
}

export interface UpdateOptions {
  /** Images finished (embedded or skipped) so far, of those that need embedding. */
  onProgress?: (done: number, total: number) => void;
  /** Called once the images to embed are known (before the first batch). */
  onPlan?: (plan: { toEmbed: number; unchanged: number }) => void;
  signal?: AbortSignal;
}

export interface SkippedImage {
  input: string;
  error: string;
}

/** What an update did; the shape `altclip index --json` prints. */
export interface IndexUpdate {
  added: number;
  updated: number;
  removed: number;
  unchanged: number;
  /** Files found under a new path with the content of a row whose file is gone: the row moved. */
  renamed: number;
  skipped: SkippedImage[];
}

export interface SearchOptions {
  /** How many results (default 10). */
  k?: number;
  /** For a text query: a template whose "{}" stands for the text (default: the text as is). */
  template?: string;
}

export interface SearchResult {
  /** absolute path of the image */
  path: string;
  /** cosine of the normalised query and image embeddings */
  score: number;
}

/** A text, or an image to search by (`{ image }` for a path, since a bare string is a text). */
export type SearchQuery = string | { text: string } | { image: ImageInput };

export const DEFAULT_INDEX_MODEL = 'BAAI/AltCLIP';

export class ImageIndex {
  private store?: ImageStore;
  /** The index's model as found (models/fingerprint.ts): recorded path, or the same weights elsewhere. */
  private resolved?: ResolvedModel;
  private textClip?: Promise<Parts>;
  private visionClip?: Promise<Parts>;

  private constructor(readonly dir: string, private readonly options: ImageIndexOptions) {}

  /**
   * Opens the index in `dir` (created on the first update if there is none yet). Fails at once on a
   * folder that is not an index, a damaged one, or one made with another model than `options.model`.
   */
  static async open(dir: string, options: ImageIndexOptions = {}): Promise<ImageIndex> {
    const index = new ImageIndex(path.resolve(dir), options);
    await index.openStore();
    return index;
  }

  /** The model the index's vectors come from, where it was found (undefined until the first update of a new index). */
  get model(): ResolvedModel | undefined {
    return this.resolved;
  }

  /** The model the vectors come from (undefined until the first update of a new index). */
  get metadata(): IndexMetadata | undefined {
    return this.store?.metadata;
  }

  /** Rows in the index. */
  async count(): Promise<number> {
    return this.store ? this.store.count() : 0;
  }

  /**
   * Brings the index up to date with `paths` (folders, walked recursively without hidden entries,
   * and files): embeds new and changed images, moves the rows of renamed files, and removes the rows
   * of files that are gone from these folders. Unreadable images are skipped and listed.
   */
  async sync(paths: string[], options: UpdateOptions = {}): Promise<IndexUpdate> {
    return this.update(paths, true, options);
  }

  /** Adds (or refreshes) `paths`, files or folders; removes nothing. */
  async add(paths: string[], options: UpdateOptions = {}): Promise<IndexUpdate> {
    return this.update(paths, false, options);
  }

  /**
   * Appends rows embedded elsewhere (by `altclip worker`s: src/queue/) with the model `identity`, one
   * commit per batch, inserted or replaced by path (appending the same rows again changes nothing).
   * A new index records `identity`; an existing one must have been made with it. Returns the rows written.
   */
  async addEmbedded(batches: Iterable<StoredRow[]> | AsyncIterable<StoredRow[]>, identity: ModelIdentity): Promise<number> {
    const lock = await WriterLock.acquire(this.dir, { waitMs: this.options.lockWaitMs });
    try {
      await this.openStore();
      if (this.store) checkIdentity(this.dir, this.store.metadata, this.resolved!, identity);
      else this.store = await this.create(identity, identity.fingerprint);
      let written = 0;
      for await (const rows of batches) {
        if (rows.length === 0) continue;
        lock.check();
        await this.store.upsert(rows);
        written += rows.length;
      }
      if (written > 0) await this.store.maintain();
      return written;
    } finally {
      await lock.release();
    }
  }

  /** Removes the rows of `paths` (a folder: every row under it). Returns how many were removed. */
  async remove(paths: string[]): Promise<number> {
    if (!this.store) return 0;
    const lock = await WriterLock.acquire(this.dir, { waitMs: this.options.lockWaitMs });
    try {
      const stored = await this.store.files();
      const targets = paths.map((p) => path.resolve(p));
      const gone = [...stored.keys()].filter((p) => targets.some((t) => p === t || isInside(p, t)));
      await this.store.delete(gone);
      if (gone.length > 0) await this.store.maintain();
      return gone.length;
    } finally {
      await lock.release();
    }
  }

  /** The `k` best images for a text or an image, best first. */
  async search(query: SearchQuery, options: SearchOptions = {}): Promise<SearchResult[]> {
    const k = options.k ?? 10;
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be a positive integer, got ${k}`);
    const store = this.requireStore();
    return this.searchVector(await this.embedQuery(query, options.template, store.metadata), { k });
  }

  /** The `k` best images for a normalised query embedding. */
  async searchVector(vector: Float32Array, options: { k?: number } = {}): Promise<SearchResult[]> {
    const store = this.requireStore();
    const k = options.k ?? 10;
    if (vector.length !== store.metadata.projectionDim) {
      throw new Error(`query has ${vector.length} dimensions, the index ${store.metadata.projectionDim}`);
    }
    const hits = await store.nearest(vector, k);
    return hits.map((h) => ({ path: h.path, score: dot(vector, h.vector) })).sort((a, b) => b.score - a.score);
  }

  /** Releases the store and the models this index loaded. */
  async close(): Promise<void> {
    this.store?.close();
    const loaded = [this.textClip, this.visionClip].filter((c): c is Promise<Parts> => c !== undefined);
    this.textClip = this.visionClip = undefined;
    if (this.options.clip) return;
    await Promise.all(loaded.map(async (c) => (await c.catch(() => undefined))?.model.dispose()));
  }

  // -------------------------------------------------------------------------------------------

  private requireStore(): ImageStore {
    if (!this.store) throw new IndexFolderError(`${this.dir}: no such index (run "altclip index <folder> --db ${this.dir}" first)`);
    return this.store;
  }

  private async embedQuery(query: SearchQuery, template: string | undefined, meta: IndexMetadata): Promise<Float32Array> {
    if (typeof query === 'string' || (typeof query === 'object' && query !== null && 'text' in query)) {
      const text = applyTemplate(typeof query === 'string' ? query : query.text, template);
      const clip = await this.clipFor('text');
      for await (const b of embedTextBatches(clip, [text])) return b.embeddings[0]!;
      throw new Error('the model returned no text embedding');
    }
    if (typeof query === 'object' && query !== null && 'image' in query) {
      const clip = await this.clipFor('vision');
      for await (const b of embedImageBatches(clip, [query.image])) return b.embeddings[0]!;
      throw new Error('the model returned no image embedding');
    }
    throw new TypeError('a search query is a text, { text }, or { image }');
  }

  /** A new index, recording the model's identity and fingerprint. */
  private async create(identity: ModelIdentity, fingerprint: ModelFingerprint | undefined): Promise<ImageStore> {
    const store = await ImageStore.open(this.dir, { create: newMetadata(identity, fingerprint), ann: this.options.ann });
    this.resolved = { model: identity.model, revision: identity.revision, dtype: identity.dtype, fingerprint: fingerprint ?? null };
    return store;
  }

  /** Opens the store once the index exists (another writer may have created it meanwhile). */
  private async openStore(): Promise<void> {
    if (this.store) return;
    const found = await openExisting(this.dir, this.options);
    this.store = found?.store;
    this.resolved = found?.model;
  }

  private clipFor(parts: 'text' | 'vision'): Promise<Parts> {
    if (this.options.clip) return Promise.resolve(this.options.clip);
    const have = parts === 'text' ? this.textClip : this.visionClip;
    if (have) return have;
    const { model, dtype, clip: _clip, batchSize: _b, lockWaitMs: _l, ann: _a, ...modelOptions } = this.options;
    const found = this.resolved;
    const loading = loadAltCLIP(found?.model ?? model ?? DEFAULT_INDEX_MODEL, {
      ...modelOptions,
      dtype: found?.dtype ?? dtype,
      ...(found?.revision ? { revision: found.revision } : {}),
      parts,
    });
    if (parts === 'text') this.textClip = loading;
    else this.visionClip = loading;
    return loading;
  }

  private async update(paths: string[], removeMissing: boolean, options: UpdateOptions): Promise<IndexUpdate> {
    if (!Array.isArray(paths) || paths.length === 0) throw new Error('nothing to index: give image files or folders');
    const lock = await WriterLock.acquire(this.dir, { waitMs: this.options.lockWaitMs });
    try {
      const { found, scopes, missing } = await collectTargets(paths);
      // The model first: a new index records its identity; an existing one must match it.
      // Another writer may have created the index while this one waited for the lock.
      await this.openStore();
      const clip = await this.clipFor('vision');
      const identity = identityOf(clip, this.store?.metadata, this.options);
      if (this.store) checkIdentity(this.dir, this.store.metadata, this.resolved!, identity);
      else {
        this.store = await this.create(identity, identity.fingerprint ?? await modelFingerprint(identity.model, { dtype: identity.dtype, revision: identity.revision }));
      }
      return await this.apply(this.store, clip, found, scopes, missing, removeMissing, options, lock);
    } finally {
      await lock.release();
    }
  }

  private async apply(
    store: ImageStore, clip: Parts, found: FileState[], scopes: string[], missingFiles: string[],
    removeMissing: boolean, options: UpdateOptions, lock: WriterLock,
  ): Promise<IndexUpdate> {
    const result: IndexUpdate = { added: 0, updated: 0, removed: 0, unchanged: 0, renamed: 0, skipped: [] };
    const stored = await store.files();
    const seen = new Set(found.map((f) => f.path));
    // Rows whose file is gone from the folders walked (or was named and is missing).
    const gone = removeMissing
      ? [...stored.values()].filter((r) => !seen.has(r.path) && (missingFiles.includes(r.path) || scopes.some((s) => isInside(r.path, s))))
      : [];

    const touched: StoredFile[] = []; // same content, new size/mtime: keep the vector
    const toEmbed: (StoredFile & { kind: 'added' | 'updated' })[] = [];
    const renames: { from: StoredFile; to: StoredFile }[] = [];
    const goneByHash = new Map<string, StoredFile[]>();
    for (const r of gone) goneByHash.set(r.sha256, [...(goneByHash.get(r.sha256) ?? []), r]);

    await forEachLimit(found, 4, async (f) => {
      const row = stored.get(f.path);
      if (row && row.size === f.size && row.mtime === f.mtime) {
        result.unchanged++;
        return;
      }
      let sha256: string;
      try {
        sha256 = await sha256File(f.path);
      } catch (err) {
        result.skipped.push({ input: f.path, error: `${f.path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` });
        return;
      }
      const file = { ...f, sha256 };
      if (row && row.sha256 === sha256) {
        touched.push(file);
        result.unchanged++;
      } else if (row) toEmbed.push({ ...file, kind: 'updated' });
      else {
        const from = goneByHash.get(sha256)?.pop();
        if (from) renames.push({ from, to: file });
        else toEmbed.push({ ...file, kind: 'added' });
      }
    });
    toEmbed.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    options.onPlan?.({ toEmbed: toEmbed.length, unchanged: result.unchanged });

    // 1. Rows that keep their vector: touched files, and renamed files (new row first, then the old
    //    one goes: a kill in between leaves the old path, which the next run removes as gone).
    const keep = [...touched.map((f) => ({ from: f, to: f })), ...renames];
    if (keep.length > 0) {
      lock.check();
      const vectors = await store.vectors(keep.map((r) => r.from.path));
      await store.upsert(keep.flatMap(({ from, to }) => (vectors.has(from.path) ? [{ ...to, vector: vectors.get(from.path)! }] : [])));
      await store.delete(renames.map((r) => r.from.path));
      result.renamed = renames.length;
    }

    // 2. New and changed images, one commit per batch: a kill loses at most the batch in flight.
    const failed: string[] = [];
    const batches = embedImageBatches(clip, toEmbed.map((f) => f.path), {
      batchSize: this.options.batchSize,
      onProgress: options.onProgress,
      signal: options.signal,
      onError: (failure) => {
        const message = (failure.error.message.split('\n')[0] ?? '').trim();
        result.skipped.push({ input: failure.input, error: message.includes(failure.input) ? message : `${failure.input}: ${message}` });
        failed.push(toEmbed[failure.index]!.path);
      },
    });
    for await (const batch of batches) {
      const rows: StoredRow[] = batch.indices.map((i, j) => ({ ...stripKind(toEmbed[i]!), vector: batch.embeddings[j]! }));
      lock.check();
      await store.upsert(rows);
      for (const i of batch.indices) result[toEmbed[i]!.kind]++;
    }

    // 3. Rows of files that are gone, and of changed files that can no longer be read.
    const renamedFrom = new Set(renames.map((r) => r.from.path));
    const removed = gone.filter((r) => !renamedFrom.has(r.path)).map((r) => r.path);
    lock.check();
    await store.delete([...removed, ...failed.filter((p) => stored.has(p))]);
    result.removed = removed.length;
    result.skipped.sort((a, b) => (a.input < b.input ? -1 : a.input > b.input ? 1 : 0));

    if (keep.length + toEmbed.length + removed.length + failed.length > 0) await store.maintain();
    return result;
  }
}

/** The index in `dir` and its model, checked against the model asked for; undefined if there is no index yet. */
async function openExisting(dir: string, options: ImageIndexOptions): Promise<{ store: ImageStore; model: ResolvedModel } | undefined> {
  let store: ImageStore;
  try {
    store = await ImageStore.open(dir, { ann: options.ann });
  } catch (err) {
    if (err instanceof IndexFolderError && /no such index|holds no index/.test(err.message)) return undefined;
    throw err;
  }
  try {
    const model = await resolveModel(dir, store.metadata, { model: options.model, dtype: options.dtype });
    return { store, model };
  } catch (err) {
    store.close();
    throw err instanceof IndexFolderError ? err : new IndexFolderError((err as Error).message);
  }
}

function stripKind(f: StoredFile & { kind: string }): StoredFile {
  return { path: f.path, size: f.size, mtime: f.mtime, sha256: f.sha256 };
}

/** Files under the folders and the files named; folders are the scopes of removal. */
async function collectTargets(paths: string[]): Promise<{ found: FileState[]; scopes: string[]; missing: string[] }> {
  const found = new Map<string, FileState>();
  const scopes: string[] = [];
  const missing: string[] = [];
  for (const p of paths) {
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(p);
    } catch {
      missing.push(path.resolve(p));
      continue;
    }
    if (st.isDirectory()) {
      scopes.push(path.resolve(p));
      for (const f of await walkImages(p)) found.set(f.path, f);
    } else {
      const f = await statFile(p);
      if (f) found.set(f.path, f);
    }
  }
  if (found.size === 0 && missing.length === paths.length) {
    throw new Error(`${paths[0]}: no such file or folder`);
  }
  return { found: [...found.values()], scopes, missing };
}

function identityOf(clip: Parts, meta: IndexMetadata | undefined, options: ImageIndexOptions): ModelIdentity {
  if (clip.identity) return clip.identity;
  // A model passed in without an identity: trust the index's record, or the options.
  if (meta) return { model: meta.model, revision: meta.revision, dtype: meta.dtype, projectionDim: meta.projectionDim };
  throw new Error(`options.clip has no identity: load it with loadAltCLIP, or give options.model (${options.model ?? 'none'}) instead`);
}

function newMetadata(identity: ModelIdentity, fingerprint: ModelFingerprint | undefined): IndexMetadata {
  const { fingerprint: _f, ...id } = identity;
  return { format: FORMAT, schemaVersion: SCHEMA_VERSION, ...id, ...(fingerprint ? { fingerprint } : {}), createdAt: new Date().toISOString() };
}

/** The model name as an index records it (models/fingerprint.ts). */
export { modelKey } from '../models/fingerprint.js';

function describe(m: { model: string; revision: string | null; dtype: string }): string {
  return `${m.model}${m.revision ? `@${m.revision.slice(0, 12)}` : ''} (${m.dtype})`;
}

/**
 * After loading: the model loaded is the one found for the index (resolveModel: recorded, or the same
 * weights moved), in its dtype and width; rows embedded elsewhere carry their model's fingerprint.
 */
function checkIdentity(dir: string, meta: IndexMetadata, found: ResolvedModel, id: ModelIdentity): void {
  const changes = meta.fingerprint && id.fingerprint ? fingerprintChanges(meta.fingerprint, id.fingerprint) : [];
  const same = (id.fingerprint && meta.fingerprint ? changes.length === 0 : id.model === found.model)
    && id.dtype === meta.dtype && id.projectionDim === meta.projectionDim
    && (found.revision === null || id.revision === null || id.revision === found.revision);
  if (!same) {
    throw new IndexFolderError(`${dir}: the index was built with ${describe(meta)}; the model loaded is ${describe(id)}`
      + `${changes.length ? ` (${changes.join('; ')})` : ''}. Embeddings of different models are not comparable: use another --db`);
  }
}

function applyTemplate(text: string, template: string | undefined): string {
  if (typeof text !== 'string') throw new TypeError('a text query must be a string');
  if (template === undefined) return text;
  if (!template.includes('{}')) throw new Error(`the template ${JSON.stringify(template)} has no "{}" for the text`);
  return template.replaceAll('{}', text);
}

/** Float64 dot product of two float32 vectors: imageTextSimilarity's cosine on unit vectors. */
function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

async function forEachLimit<T>(items: T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await run(items[next++]!);
  }));
}
