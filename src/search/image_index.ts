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
import type { AltCLIPParts, EmbedOptions, ModelIdentity } from '../tasks/types.js';
import { type FileState, isInside, sha256File, statFile, UnreadableFolderError, type UnreadablePath, walkImagesReport } from './files.js';
import { WriterLock } from './lock.js';
import { type AnnOptions, FORMAT, ImageStore, type IndexMetadata, IndexFolderError, SCHEMA_VERSION, type StoredFile, type StoredRow } from './store.js';

/** Rows are committed in groups: this many rows, or after this long (whichever comes first). */
export const DEFAULT_COMMIT_ROWS = 1024;
export const DEFAULT_COMMIT_MS = 2_000;
/** A long run removes old versions every this many commits, so that at most about this many are kept. */
const COMPACT_EVERY_COMMITS = 50;

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
  /**
   * "vectors": check the model's weights against the index's fingerprint only when vectors arrive with
   * their own fingerprint (a fleet coordinator, which need not have the model), not by hashing it here.
   */
  checkWeights?: 'here' | 'vectors';
  /** Approximate-index settings (row count that triggers it, probes, re-ranking). */
  ann?: Partial<AnnOptions>;
  /** Commit embedded rows once this many are pending (default 1024)... */
  commitRows?: number;
  /** ...or once the last commit is this many ms old (default 2000). A kill -9 loses at most one group. */
  commitMs?: number;
}

export interface UpdateOptions {
  /** Images finished (embedded or skipped) so far, of those that need embedding. */
  onProgress?: (done: number, total: number) => void;
  /** Called once the images to embed are known (before the first batch). */
  onPlan?: (plan: { toEmbed: number; unchanged: number }) => void;
  /** Stops embedding: what was embedded is committed, then IndexInterruptedError is thrown. */
  signal?: AbortSignal;
  /** Remove the rows of offline paths (missing, emptied or unreadable folders) too (default: keep them). */
  pruneOffline?: boolean;
}

/** A path whose rows were kept because it could not be read, or is missing or empty where it had rows. */
export interface OfflinePath {
  path: string;
  /** "missing", "empty", "unreadable (EACCES)", ... */
  reason: string;
}

/** Argument paths that do not exist (and have no rows in the index): nothing was done. */
export class MissingPathsError extends Error {
  override name = 'MissingPathsError';
  constructor(readonly paths: string[]) {
    super(paths.length === 1 ? `${paths[0]}: no such file or folder (nothing was indexed)`
      : `no such files or folders: ${paths.join(', ')} (nothing was indexed)`);
  }
}

/** An update stopped by its signal; `result` is what was committed (and is kept). */
export class IndexInterruptedError extends Error {
  override name = 'IndexInterruptedError';
  constructor(readonly result: IndexUpdate) {
    super('interrupted');
  }
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
  /** Paths whose rows were kept (or removed, with pruneOffline) because they could not be read. */
  offline: OfflinePath[];
  /** Paths that had more than one row (written by an older altclip), left with one. */
  repaired: number;
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

/** Vectors for some of the paths given to Embedder.embed (`indices` into them), in order. */
export interface EmbeddedBatch {
  indices: number[];
  embeddings: Float32Array[];
}

/** What embeds the images of an update: the index's model here, or a fleet of workers. */
export interface Embedder {
  /** The model that made the vectors (undefined: nothing was embedded). */
  identity: ModelIdentity | undefined;
  embed(paths: string[], options: Pick<EmbedOptions, 'onError' | 'onProgress' | 'signal'>): AsyncIterable<EmbeddedBatch>;
  /** Rows for inputs outside the plan (URLs, list files, tars given to the fleet). */
  extra?(): AsyncIterable<StoredRow[]>;
}

/** The fleet: embeds `paths` (the plan's new and changed images) elsewhere, before anything is committed. */
export type RemoteEmbed = (paths: string[]) => Promise<Embedder>;

function emptyUpdate(): IndexUpdate {
  return { added: 0, updated: 0, removed: 0, unchanged: 0, renamed: 0, skipped: [], offline: [], repaired: 0 };
}

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

  /**
   * sync() with the images embedded elsewhere (`altclip index --queue`, src/queue/coordinator.ts): the
   * same plan against the rows (added, changed, renamed, removed, offline) and the same commits, under
   * the writer lock for the whole run; `remote` gets the paths to embed once the plan is made.
   */
  async syncRemote(paths: string[], remote: RemoteEmbed, options: UpdateOptions = {}): Promise<IndexUpdate> {
    return this.update(paths, true, options, remote);
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
      this.store.fence = lock;
      let written = 0;
      for await (const rows of batches) {
        if (rows.length === 0) continue;
        await this.store.upsert(rows);
        written += rows.length;
      }
      if (written > 0) await this.store.maintain();
      return written;
    } finally {
      if (this.store) this.store.fence = undefined;
      await lock.release();
    }
  }

  /** Removes the rows of `paths` (a folder: every row under it). Returns how many were removed. */
  async remove(paths: string[]): Promise<number> {
    if (!this.store) return 0;
    const lock = await WriterLock.acquire(this.dir, { waitMs: this.options.lockWaitMs });
    try {
      this.store.fence = lock;
      const stored = await this.store.files();
      const targets = paths.map((p) => path.resolve(p));
      const gone = [...stored.keys()].filter((p) => targets.some((t) => p === t || isInside(p, t)));
      await this.store.delete(gone);
      if (gone.length > 0) await this.store.maintain();
      return gone.length;
    } finally {
      this.store.fence = undefined;
      await lock.release();
    }
  }

  /**
   * Compacts the table and removes every old version (`graceMs` 0) or those older than `graceMs`:
   * `altclip index --compact`. Returns the versions left.
   */
  async compact(graceMs = 0): Promise<{ versions: number }> {
    const store = this.requireStore();
    const lock = await WriterLock.acquire(this.dir, { waitMs: this.options.lockWaitMs });
    try {
      store.fence = lock;
      return { versions: await store.compact(graceMs) };
    } finally {
      store.fence = undefined;
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

  /** What the index recorded of `file` (an indexed path): size, mtime, sha256; undefined when not indexed. */
  async file(file: string): Promise<StoredFile | undefined> {
    return this.store?.file(file);
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
    const { model, dtype, clip: _clip, batchSize: _b, lockWaitMs: _l, ann: _a, commitRows: _r, commitMs: _m, checkWeights: _w, ...modelOptions } = this.options;
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

  /** The images of a plan embedded here, with the index's model. */
  private async localEmbedder(): Promise<Embedder> {
    const clip = await this.clipFor('vision');
    return {
      identity: identityOf(clip, this.store?.metadata, this.options),
      embed: (paths, options) => embedImageBatches(clip, paths, { batchSize: this.options.batchSize, ...options }),
    };
  }

  private async update(paths: string[], removeMissing: boolean, options: UpdateOptions, remote?: RemoteEmbed): Promise<IndexUpdate> {
    if (!Array.isArray(paths) || (paths.length === 0 && !remote)) throw new Error('nothing to index: give image files or folders');
    const created = !fs.existsSync(this.dir);
    const lock = await WriterLock.acquire(this.dir, { waitMs: this.options.lockWaitMs });
    try {
      // Another writer may have created the index while this one waited for the lock.
      await this.openStore();
      const scan = this.store ? await this.store.scan() : { files: new Map<string, StoredFile>(), duplicates: [] };
      // Before anything is loaded or written: every argument must exist, or have rows (then it is offline).
      const targets = await scanTargets(paths, scan.files);
      const plan = await planUpdate(scan.files, targets, { removeMissing, pruneOffline: options.pruneOffline === true, deferHashes: true });
      // The model next: a new index records its identity; an existing one must match it. Embedded
      // elsewhere (the fleet), the images of the plan are embedded before anything is committed.
      const embedder = remote ? await remote(plan.toEmbed.map((f) => f.path)) : await this.localEmbedder();
      const { identity } = embedder;
      if (!identity) {
        // the fleet embedded nothing: nothing to check the model against (an index is not created empty)
        if (!this.store) return { ...emptyUpdate(), unchanged: plan.unchanged, skipped: plan.skipped, offline: plan.offline };
      } else if (this.store) checkIdentity(this.dir, this.store.metadata, this.resolved!, identity);
      else {
        this.store = await this.create(identity, identity.fingerprint ?? await modelFingerprint(identity.model, { dtype: identity.dtype, revision: identity.revision }));
      }
      this.store.fence = lock;
      const commitsBefore = this.store.commits;
      await this.store.repairDuplicates(scan.duplicates);
      const result = await this.apply(this.store, embedder, plan, options, commitsBefore);
      result.repaired = scan.duplicates.length;
      return result;
    } finally {
      if (this.store) this.store.fence = undefined;
      await lock.release();
      // a run refused before its first commit leaves no folder behind (rmdir: only an empty one)
      if (created && !this.store) {
        try {
          fs.rmdirSync(this.dir);
        } catch {
          // not empty (another writer's files): not ours to remove
        }
      }
    }
  }

  /** Carries out a plan: rows that keep their vector, then new and changed images in groups, then removals. */
  private async apply(store: ImageStore, embedder: Embedder, plan: UpdatePlan, options: UpdateOptions, commitsBefore: number): Promise<IndexUpdate> {
    const result: IndexUpdate = {
      added: 0, updated: 0, removed: 0, unchanged: plan.unchanged, renamed: 0, skipped: [...plan.skipped], offline: plan.offline, repaired: 0,
    };
    const { toEmbed, renames } = plan;
    options.onPlan?.({ toEmbed: toEmbed.length, unchanged: result.unchanged });
    let compactedAt = store.commits;
    const maybeCompact = async () => {
      if (store.commits - compactedAt < COMPACT_EVERY_COMMITS) return;
      await store.compact();
      compactedAt = store.commits;
    };

    // 1. Rows that keep their vector: touched files, and renamed files (new row first, then the old
    //    one goes: a kill in between leaves the old path, which the next run removes as gone).
    const keep = [...plan.touched.map((f) => ({ from: f, to: f })), ...renames];
    if (keep.length > 0) {
      const vectors = await store.vectors(keep.map((r) => r.from.path));
      await store.upsert(keep.flatMap(({ from, to }) => (vectors.has(from.path) ? [{ ...to, vector: vectors.get(from.path)! }] : [])));
      await store.delete(renames.map((r) => r.from.path));
      result.renamed = renames.length;
    }

    // 2. New and changed images, committed in groups (by count and by time): a kill loses at most the
    //    group pending, which the next run embeds again.
    const commitRows = this.options.commitRows ?? DEFAULT_COMMIT_ROWS;
    const commitMs = this.options.commitMs ?? DEFAULT_COMMIT_MS;
    let pending: { row: StoredRow; kind: 'added' | 'updated' }[] = [];
    let lastCommit = performance.now();
    // A group's commit runs while the next batches are embedded; one commit at a time, in order.
    let committing: Promise<void> = Promise.resolve();
    const commitGroup = async (group: typeof pending) => {
      // deferred hashes (planUpdate's deferHashes), computed while the next batches are embedded
      const unread = new Set<string>();
      await forEachLimit(group.filter((p) => p.row.sha256 === ''), 4, async (p) => {
        try {
          p.row.sha256 = await sha256File(p.row.path);
        } catch (err) {
          unread.add(p.row.path); // gone or unreadable since it was embedded: not added
          result.skipped.push({ input: p.row.path, error: `${p.row.path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` });
        }
      });
      if (unread.size > 0) group = group.filter((p) => !unread.has(p.row.path));
      await store.upsert(group.map((p) => p.row));
      for (const p of group) result[p.kind]++;
      await maybeCompact();
    };
    const flush = async (wait: boolean) => {
      await committing;
      if (pending.length > 0) {
        committing = commitGroup(pending);
        committing.catch(() => {}); // awaited at the next flush; not an unhandled rejection meanwhile
        pending = [];
      }
      lastCommit = performance.now();
      if (wait) await committing;
    };
    const failed: string[] = [];
    const batches = embedder.embed(toEmbed.map((f) => f.path), {
      onProgress: options.onProgress,
      signal: options.signal,
      onError: (failure) => {
        const message = (failure.error.message.split('\n')[0] ?? '').trim();
        result.skipped.push({ input: failure.input, error: message.includes(failure.input) ? message : `${failure.input}: ${message}` });
        failed.push(toEmbed[failure.index]!.path);
      },
    });
    try {
      for await (const batch of batches) {
        for (const [j, i] of batch.indices.entries()) pending.push({ row: { ...stripKind(toEmbed[i]!), vector: batch.embeddings[j]! }, kind: toEmbed[i]!.kind });
        if (pending.length >= commitRows || performance.now() - lastCommit >= commitMs) await flush(false);
      }
      // rows embedded elsewhere for inputs outside the plan (the fleet's URLs, lists, tars): inserted or replaced
      for await (const rows of embedder.extra?.() ?? []) {
        for (const row of rows) pending.push({ row, kind: plan.stored.has(row.path) ? 'updated' : 'added' });
        if (pending.length >= commitRows || performance.now() - lastCommit >= commitMs) await flush(false);
      }
      await flush(true);
    } catch (err) {
      if (!options.signal?.aborted) {
        await committing.catch(() => {}); // no commit outlives the run (and its lock)
        throw err;
      }
      await flush(true); // what was embedded before the interruption is kept
      result.skipped.sort(byInput);
      throw new IndexInterruptedError(result);
    }

    // 3. Rows of files verifiably gone, and of changed files that are no longer images.
    const removed = plan.removed;
    const stale = failed.filter((p) => plan.stored.has(p));
    await store.delete([...removed, ...stale]);
    result.removed = removed.length;
    result.skipped.sort(byInput);

    // old versions go at the end of a run (those of the last minute stay for readers still on them)
    if (store.commits > commitsBefore) await store.maintain();
    return result;
  }
}

const byInput = (a: SkippedImage, b: SkippedImage) => (a.input < b.input ? -1 : a.input > b.input ? 1 : 0);

/** What the arguments of an update found on disk. */
export interface UpdateTargets {
  /** Image files found (walked folders, and files named). */
  found: FileState[];
  /** Folders walked completely enough that a row under them whose file was not found is gone. */
  scopes: string[];
  /** Files named that are gone (ENOENT under a readable parent folder). */
  missingFiles: string[];
  /** Missing, emptied or unreadable folders and files that have rows: their rows are not gone. */
  offline: OfflinePath[];
}

/**
 * Reads the arguments of an update against the rows `stored`. Rows are only ever found gone under a
 * folder that was read (as Immich treats offline libraries): a folder that is missing, unreadable, or
 * empty where it had rows is offline, as is each subfolder or file that cannot be read. An argument
 * that does not exist and has no rows is an error naming it (MissingPathsError), before anything is done.
 */
export async function scanTargets(paths: string[], stored: Map<string, StoredFile>): Promise<UpdateTargets> {
  const found = new Map<string, FileState>();
  const scopes: string[] = [];
  const missingFiles: string[] = [];
  const offline: OfflinePath[] = [];
  const notFound: string[] = [];
  const rowsUnder = (p: string) => [...stored.keys()].some((r) => isInside(r, p));
  for (const arg of paths) {
    const p = path.resolve(arg);
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      if (rowsUnder(p)) offline.push({ path: p, reason: code === 'ENOENT' ? 'missing' : `unreadable (${code})` });
      else if (stored.has(p) && code === 'ENOENT' && readableFolder(path.dirname(p))) missingFiles.push(p);
      else if (stored.has(p)) offline.push({ path: p, reason: code === 'ENOENT' ? 'missing (its folder cannot be read)' : `unreadable (${code})` });
      else notFound.push(code === 'ENOENT' ? arg : `${arg} (${code})`);
      continue;
    }
    if (st.isDirectory()) {
      let walked: Awaited<ReturnType<typeof walkImagesReport>>;
      try {
        walked = await walkImagesReport(p);
      } catch (err) {
        if (!(err instanceof UnreadableFolderError)) throw err;
        offline.push({ path: p, reason: `unreadable (${err.code})` });
        continue;
      }
      if (walked.files.length === 0 && walked.unreadable.length === 0 && rowsUnder(p)) {
        offline.push({ path: p, reason: 'empty' }); // an unmounted drive's mount point, most likely
        continue;
      }
      scopes.push(p);
      offline.push(...walked.unreadable);
      for (const f of walked.files) found.set(f.path, f);
    } else {
      const f = await statFile(p);
      if (f) found.set(f.path, f);
    }
  }
  if (notFound.length > 0) throw new MissingPathsError(notFound);
  return { found: [...found.values()], scopes, missingFiles, offline: dedupeOffline(offline) };
}

/** What an update will do, decided from the rows and the files found before anything is written. */
export interface UpdatePlan {
  /** The rows read (path -> file), the plan's base. */
  stored: Map<string, StoredFile>;
  unchanged: number;
  /** Same content, new size/mtime: the row keeps its vector. */
  touched: StoredFile[];
  /** To embed: new files, and changed ones. */
  toEmbed: (StoredFile & { kind: 'added' | 'updated' })[];
  /** A file gone and one with its content at a new path: the row moves. */
  renames: { from: StoredFile; to: StoredFile }[];
  /** Rows to remove: files verifiably gone (and, with pruneOffline, the offline rows). */
  removed: string[];
  offline: OfflinePath[];
  /** Files that could not be hashed (their rows, if any, are kept). */
  skipped: SkippedImage[];
}

/**
 * The plan of an update (added/changed/renamed/removed against the db): hashes the files whose size or
 * mtime differ from their row. With `removeMissing`, rows under the walked folders whose files were not
 * found are gone, except under offline paths (removed too with `pruneOffline`).
 */
export async function planUpdate(
  stored: Map<string, StoredFile>, targets: UpdateTargets,
  options: {
    removeMissing: boolean;
    pruneOffline?: boolean;
    /**
     * New files are hashed only to find renames; with no row gone there is none, and with this set
     * they are left with sha256 "" for the caller to hash when it commits them (ImageIndex does it
     * while the next images are embedded).
     */
    deferHashes?: boolean;
  },
): Promise<UpdatePlan> {
  const { found, scopes, missingFiles, offline } = targets;
  const plan: UpdatePlan = { stored, unchanged: 0, touched: [], toEmbed: [], renames: [], removed: [], offline, skipped: [] };
  const seen = new Set(found.map((f) => f.path));
  const underOffline = (p: string) => offline.some((o) => p === o.path || isInside(p, o.path));
  const named = new Set(missingFiles);
  const gone = options.removeMissing
    ? [...stored.values()].filter((r) => !seen.has(r.path) && (named.has(r.path) || scopes.some((s) => isInside(r.path, s))) && !underOffline(r.path))
    : [];
  const pruned = options.pruneOffline ? [...stored.keys()].filter((p) => !seen.has(p) && underOffline(p)) : [];

  const goneByHash = new Map<string, StoredFile[]>();
  for (const r of gone) goneByHash.set(r.sha256, [...(goneByHash.get(r.sha256) ?? []), r]);
  const defer = options.deferHashes === true && gone.length === 0;
  await forEachLimit(found, 4, async (f) => {
    const row = stored.get(f.path);
    if (row && row.size === f.size && row.mtime === f.mtime) {
      plan.unchanged++;
      return;
    }
    if (!row && defer) {
      plan.toEmbed.push({ ...f, sha256: '', kind: 'added' });
      return;
    }
    let sha256: string;
    try {
      sha256 = await sha256File(f.path);
    } catch (err) {
      plan.skipped.push({ input: f.path, error: `${f.path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` });
      return;
    }
    const file = { ...f, sha256 };
    if (row && row.sha256 === sha256) {
      plan.touched.push(file);
      plan.unchanged++;
    } else if (row) plan.toEmbed.push({ ...file, kind: 'updated' });
    else {
      const from = goneByHash.get(sha256)?.pop();
      if (from) plan.renames.push({ from, to: file });
      else plan.toEmbed.push({ ...file, kind: 'added' });
    }
  });
  plan.toEmbed.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const renamedFrom = new Set(plan.renames.map((r) => r.from.path));
  plan.removed = [...gone.filter((r) => !renamedFrom.has(r.path)).map((r) => r.path), ...pruned];
  return plan;
}

function readableFolder(dir: string): boolean {
  try {
    fs.readdirSync(dir);
    return true;
  } catch {
    return false;
  }
}

/** Offline paths, without those inside another one. */
function dedupeOffline(offline: OfflinePath[]): OfflinePath[] {
  const sorted = [...offline].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return sorted.filter((o, i) => !sorted.some((other, j) => j !== i && (isInside(o.path, other.path) || (o.path === other.path && j < i))));
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
    const model = await resolveModel(dir, store.metadata, { model: options.model, dtype: options.dtype }, { hash: options.checkWeights !== 'vectors' });
    return { store, model };
  } catch (err) {
    store.close();
    throw err instanceof IndexFolderError ? err : new IndexFolderError((err as Error).message);
  }
}

function stripKind(f: StoredFile & { kind: string }): StoredFile {
  return { path: f.path, size: f.size, mtime: f.mtime, sha256: f.sha256 };
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
