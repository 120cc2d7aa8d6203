// The index folder: one LanceDB table `images` (schema declared once, below), whose Arrow schema
// metadata records which model made the vectors. LanceDB commits each write as a new table version
// (data files first, then an atomic manifest), so a writer killed at any moment leaves the last
// committed version intact; rows are upserted by path (merge-insert), so a re-run never duplicates.
// The same table is readable from Python: lancedb.connect(dir).open_table("images").to_pandas()
// (skip the fence row, path "").
//
// The fence row. Lance resolves concurrent commits optimistically: two merge-inserts that both only
// insert are rebased onto each other, so a writer resumed after losing its lock (lock.ts) could add a
// second row for a path the new holder inserted meanwhile. Every commit therefore also updates one row,
// path "" (FENCE_PATH), holding the committing writer's lock token: two commits made from the same
// table version now touch the same row, Lance refuses the later one as a conflict and merge-insert
// retries it against the new version, where its inserts become updates. Deletions go through the same
// merge-insert (whenNotMatchedBySourceDelete), so they conflict too. Readers skip the fence row.
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import type * as Lance from '@lancedb/lancedb';
import type * as Arrow from 'apache-arrow';
import type { ModelFingerprint } from '../models/fingerprint.js';
import { LOCK_NAME } from './lock.js';

export const TABLE_NAME = 'images';
export const METADATA_KEY = 'altclip';
export const FORMAT = 'altclip-image-index';
export const SCHEMA_VERSION = 1;
/** The path of the fence row (no image has an empty path). */
export const FENCE_PATH = '';
/** Old versions younger than this survive a run's cleanup: a reader may still be on one... */
export const VERSION_GRACE_MS = 60_000;
/** ...but no more than this many versions are kept (a writer cleans up every 50 commits: at most ~100 on disk). */
export const KEPT_VERSIONS = 50;

/** What the store needs of the writer lock: its token, and a check that it still holds it. */
export interface Fence {
  readonly token: string;
  check(): void;
}

/** What made the vectors: written when the index is created, checked by every writer. */
export interface IndexMetadata {
  format: typeof FORMAT;
  schemaVersion: number;
  /** hub repo id, or the absolute real path of a local model folder */
  model: string;
  /** hub commit sha; null for a local folder */
  revision: string | null;
  dtype: 'fp32' | 'q8';
  projectionDim: number;
  /** config + weight files' sha256, dtype and q8 scheme (models/fingerprint.ts); absent in older indexes */
  fingerprint?: ModelFingerprint;
  createdAt: string;
}

/** One row without its vector. */
export interface StoredFile {
  path: string;
  size: number;
  mtime: number;
  sha256: string;
}

export interface StoredRow extends StoredFile {
  /** the L2-normalised image embedding */
  vector: Float32Array;
}

export interface StoreHit {
  path: string;
  vector: Float32Array;
}

/** Approximate-index settings; see BENCHMARKS.md ("search") for the measurements behind them. */
export interface AnnOptions {
  /** Build an IVF_PQ index once the table holds this many rows (below: exact scan). */
  minRows: number;
  /** IVF partitions probed per query. */
  nprobes: number;
  /** PQ candidates re-ranked with the full vectors: k * refineFactor. */
  refineFactor: number;
}

// Measured on a 2-core Zen 5 (BENCHMARKS.md, "Search"), clustered 768-dim vectors:
// refineFactor: on 1M (IVF_PQ, 1000 partitions, 48 sub-vectors, nprobes 32) recall@10 was 0.40 / 0.70 / 0.997 / 1.0
// with 20 / 50 / 100 / 200, store-only p50 17 / 22 / 31 / 101 ms.
// minRows: LanceDB's exact scan took 40-151 ms at 10k rows, 274 ms at 15k, 287-450 ms at 20k; IVF_PQ + refine 100
// took 22 ms at 10k (recall@10 0.987, built in 12 s) and 23 ms at 20k (recall 1.0, built in 28 s).
export const DEFAULT_ANN: AnnOptions = { minRows: 10_000, nprobes: 32, refineFactor: 100 };

// Loaded on first use: importing the package must not load LanceDB's native module.
let lancedb: typeof Lance;
let arrow: typeof Arrow;
export async function loadLance(): Promise<void> {
  lancedb = await import('@lancedb/lancedb');
  // LanceDB require()s apache-arrow: the same (CommonJS) instance, so that its instanceof checks hold
  arrow = createRequire(import.meta.url)('apache-arrow') as typeof Arrow;
}

/** The apache-arrow module LanceDB uses (after loadLance). */
export function arrowModule(): typeof Arrow {
  return arrow;
}

/** The table's schema (call after loadLance). */
export function schemaFor(metadata: IndexMetadata): Arrow.Schema {
  return new arrow.Schema(
    [
      new arrow.Field('path', new arrow.Utf8(), false),
      new arrow.Field('size', new arrow.Int64(), false),
      new arrow.Field('mtime', new arrow.Float64(), false),
      new arrow.Field('sha256', new arrow.Utf8(), false),
      new arrow.Field('vector', new arrow.FixedSizeList(metadata.projectionDim, new arrow.Field('item', new arrow.Float32(), true)), false),
    ],
    new Map([[METADATA_KEY, JSON.stringify(metadata)]]),
  );
}

const FIELDS = ['path:Utf8', 'size:Int64', 'mtime:Float64', 'sha256:Utf8'];

/** A problem with the index folder itself (missing, foreign, damaged, other model). */
export class IndexFolderError extends Error {
  override name = 'IndexFolderError';
}

/** SQL string literal (LanceDB filters: '' escapes a quote). */
export function sqlString(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

export class ImageStore {
  /** The writer lock the commits are fenced with (set by the writer holding it). */
  fence?: Fence;
  /** Commits made through this handle. */
  commits = 0;

  private constructor(
    readonly dir: string,
    private readonly table: Lance.Table,
    readonly metadata: IndexMetadata,
    private readonly ann: AnnOptions,
  ) {}

  /**
   * Opens the index in `dir`. With `create`, a missing or empty folder becomes a new index with that
   * metadata (the caller holds the writer lock); without it, a missing index is an error.
   */
  static async open(dir: string, options: { create?: IndexMetadata; ann?: Partial<AnnOptions> } = {}): Promise<ImageStore> {
    const ann = { ...DEFAULT_ANN, ...options.ann };
    await loadLance();
    const state = folderState(dir);
    if (state === 'missing' || state === 'empty' || state === 'incomplete') {
      if (!options.create) {
        throw new IndexFolderError(state === 'missing' ? `${dir}: no such index (run "altclip index <folder> --db ${dir}" first)`
          : `${dir}: holds no index yet (run "altclip index <folder> --db ${dir}" first)`);
      }
      fs.mkdirSync(dir, { recursive: true });
      // A creation killed before its first commit leaves a table folder without a version (and, as
      // folderState checked, without data): start over.
      if (state === 'incomplete') fs.rmSync(path.join(dir, `${TABLE_NAME}.lance`), { recursive: true, force: true });
      const db = await lancedb.connect(dir, { readConsistencyInterval: 0 });
      // An empty first commit (so that data without a version is always damage, never a killed
      // creation), then the fence row, so that every later commit can conflict on it (a kill in
      // between: the first upsert inserts it).
      const table = await db.createEmptyTable(TABLE_NAME, schemaFor(options.create));
      const store = new ImageStore(dir, table, options.create, ann);
      await store.commit(() => table.add(lancedb.makeArrowTable([arrowRow(store.fenceRow())], { schema: schemaFor(options.create!) })));
      return store;
    }
    let table: Lance.Table;
    let schema: Arrow.Schema;
    try {
      const db = await lancedb.connect(dir, { readConsistencyInterval: 0 });
      table = await db.openTable(TABLE_NAME);
      schema = await table.schema();
    } catch (err) {
      throw damaged(dir, err);
    }
    return new ImageStore(dir, table, readMetadata(dir, schema), ann);
  }

  /** Every row's path, size, mtime and hash (no vectors); the fence row left out. */
  async files(): Promise<Map<string, StoredFile>> {
    return (await this.scan()).files;
  }

  /** files(), and the paths that have more than one row (written by versions before the fence row). */
  async scan(): Promise<{ files: Map<string, StoredFile>; duplicates: string[] }> {
    const out = new Map<string, StoredFile>();
    const duplicates = new Set<string>();
    try {
      for await (const batch of this.table.query().select(['path', 'size', 'mtime', 'sha256'])) {
        const [p, s, m, h] = ['path', 'size', 'mtime', 'sha256'].map((n) => batch.getChild(n)!);
        for (let i = 0; i < batch.numRows; i++) {
          const file = { path: p!.get(i) as string, size: Number(s!.get(i)), mtime: m!.get(i) as number, sha256: h!.get(i) as string };
          if (file.path === FENCE_PATH) continue;
          if (out.has(file.path)) duplicates.add(file.path);
          out.set(file.path, file);
        }
      }
    } catch (err) {
      throw damaged(this.dir, err);
    }
    return { files: out, duplicates: [...duplicates].sort() };
  }

  /**
   * Leaves one row for each of `paths` (those with several): deletes them all and writes back one,
   * in two commits (a kill in between loses the row, which the next run embeds again).
   */
  async repairDuplicates(paths: string[]): Promise<void> {
    if (paths.length === 0) return;
    const keep = new Map<string, StoredRow>();
    for (let start = 0; start < paths.length; start += 500) {
      const filter = `path IN (${paths.slice(start, start + 500).map(sqlString).join(', ')})`;
      const rows = await this.guard(() => this.table.query().where(filter).select(['path', 'size', 'mtime', 'sha256', 'vector']).toArray());
      for (const r of rows) {
        keep.set(r.path as string, { path: r.path as string, size: Number(r.size), mtime: r.mtime as number, sha256: r.sha256 as string, vector: vectorOf(r.vector) });
      }
    }
    await this.delete(paths);
    await this.upsert([...keep.values()]);
  }

  /** The row of `file` without its vector, or undefined when none. */
  async file(file: string): Promise<StoredFile | undefined> {
    const rows = await this.guard(() => this.table.query().where(`path = ${sqlString(file)}`).select(['path', 'size', 'mtime', 'sha256']).limit(1).toArray());
    const r = rows[0];
    return r ? { path: r.path as string, size: Number(r.size), mtime: r.mtime as number, sha256: r.sha256 as string } : undefined;
  }

  /** The stored vectors of `paths` (those present). */
  async vectors(paths: string[]): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (let start = 0; start < paths.length; start += 500) {
      const filter = `path IN (${paths.slice(start, start + 500).map(sqlString).join(', ')})`;
      const rows = await this.guard(() => this.table.query().where(filter).select(['path', 'vector']).toArray());
      for (const r of rows) out.set(r.path as string, vectorOf(r.vector));
    }
    return out;
  }

  /** Inserts or replaces rows by path, in one (fenced) commit. */
  async upsert(rows: StoredRow[]): Promise<void> {
    if (rows.length === 0) return;
    const data = lancedb.makeArrowTable([...rows, this.fenceRow()].map(arrowRow), { schema: schemaFor(this.metadata) });
    await this.commit(() => this.table.mergeInsert('path').whenMatchedUpdateAll().whenNotMatchedInsertAll().execute(data));
  }

  /** Deletes the rows of `paths`, 500 per (fenced) commit. */
  async delete(paths: string[]): Promise<void> {
    for (let start = 0; start < paths.length; start += 500) {
      const filter = `path IN (${paths.slice(start, start + 500).map(sqlString).join(', ')})`;
      const data = lancedb.makeArrowTable([arrowRow(this.fenceRow())], { schema: schemaFor(this.metadata) });
      await this.commit(() => this.table.mergeInsert('path').whenMatchedUpdateAll().whenNotMatchedInsertAll()
        .whenNotMatchedBySourceDelete({ where: filter }).execute(data));
    }
  }

  /** Image rows (the fence row not counted). */
  async count(): Promise<number> {
    return this.guard(() => this.table.countRows(`path <> ${sqlString(FENCE_PATH)}`));
  }

  /** Table versions kept on disk. */
  async versionCount(): Promise<number> {
    return (await this.guard(() => this.table.listVersions())).length;
  }

  /** Whether the approximate index exists. */
  async hasAnnIndex(): Promise<boolean> {
    const indices = await this.guard(() => this.table.listIndices());
    return indices.some((i) => i.columns.includes('vector'));
  }

  /**
   * The `k` nearest rows by cosine distance: an exact scan, or IVF_PQ + re-ranking with the full
   * vectors once the approximate index exists. Rows written after the index was built are scanned
   * exactly alongside it (LanceDB searches unindexed rows by brute force).
   */
  async nearest(query: Float32Array, k: number): Promise<StoreHit[]> {
    // k + 1: the fence row may be among the nearest
    const search = () => this.table.vectorSearch(query).distanceType('cosine').limit(k + 1).select(['path', 'vector', '_distance']);
    const hits = (rows: Record<string, unknown>[]) => rows.filter((r) => r.path !== FENCE_PATH).slice(0, k)
      .map((r) => ({ path: r.path as string, vector: vectorOf(r.vector) }));
    if (!(await this.hasAnnIndex())) return hits(await this.guard(() => search().toArray()));
    const approx = hits(await this.guard(() => search().nprobes(this.ann.nprobes).refineFactor(this.ann.refineFactor).toArray()));
    if (approx.length >= k) return approx;
    // The probed partitions held fewer than k rows: if the table has more, scan it all, so that k
    // above the row count returns every row (as without the index).
    const rows = await this.count();
    if (approx.length >= rows) return approx;
    return hits(await this.guard(() => search().bypassVectorIndex().toArray()));
  }

  /**
   * After writes: builds the approximate index once the table is big enough, folds new rows into an
   * existing one, and compacts the small fragments that batch-by-batch commits leave.
   */
  async maintain(): Promise<void> {
    const rows = await this.count();
    const hadIndex = await this.hasAnnIndex();
    await this.compact(VERSION_GRACE_MS);
    if (!hadIndex && rows >= this.ann.minRows) {
      await this.buildAnnIndex(rows);
      await this.compact(VERSION_GRACE_MS);
    }
  }

  /**
   * Compacts small fragments, folds new rows into the approximate index, and removes the versions
   * older than `graceMs` (0: all but the current one). Files of writes still in progress are kept
   * (LanceDB's deleteUnverified stays off). Returns the versions left.
   */
  async compact(graceMs = VERSION_GRACE_MS): Promise<number> {
    this.fence?.check();
    // by age, and by count: at most KEPT_VERSIONS survive, however fast the commits came
    const versions = await this.guard(() => this.table.listVersions());
    let cutoff = Date.now() - graceMs;
    if (versions.length > KEPT_VERSIONS) cutoff = Math.max(cutoff, new Date(versions[versions.length - KEPT_VERSIONS]!.timestamp).getTime());
    await this.guard(() => this.table.optimize({ cleanupOlderThan: new Date(cutoff) }));
    return this.versionCount();
  }

  async buildAnnIndex(rows?: number): Promise<void> {
    const n = rows ?? (await this.count());
    const dim = this.metadata.projectionDim;
    // LanceDB's defaults: sqrt(rows) partitions; dim / 16 sub-vectors (8-bit codes) when it divides.
    const numPartitions = Math.max(1, Math.round(Math.sqrt(n)));
    const numSubVectors = dim % 16 === 0 ? dim / 16 : dim % 8 === 0 ? dim / 8 : dim % 4 === 0 ? dim / 4 : 1;
    await this.guard(() =>
      this.table.createIndex('vector', {
        config: lancedb.Index.ivfPq({ numPartitions, numSubVectors, distanceType: 'cosine' }),
        replace: true,
      }),
    );
  }

  close(): void {
    this.table.close();
  }

  private fenceRow(): StoredRow {
    return fenceRow(this.metadata.projectionDim, this.fence?.token ?? '');
  }

  /** A write: the writer must hold the lock before it, and a failure after losing it says so. */
  private async commit<T>(run: () => Promise<T>): Promise<T> {
    this.fence?.check();
    try {
      const out = await run();
      this.commits++;
      return out;
    } catch (err) {
      this.fence?.check();
      throw damaged(this.dir, err);
    }
  }

  private async guard<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw damaged(this.dir, err);
    }
  }
}

/** The fence row: a unit vector (a zero one has no cosine), the writer's token as its hash. */
function fenceRow(dim: number, token: string): StoredRow {
  const vector = new Float32Array(dim);
  vector[0] = 1;
  return { path: FENCE_PATH, size: 0, mtime: Date.now(), sha256: token, vector };
}

function arrowRow(r: StoredRow): Record<string, unknown> {
  return { path: r.path, size: BigInt(r.size), mtime: r.mtime, sha256: r.sha256, vector: Array.from(r.vector) };
}

function vectorOf(v: unknown): Float32Array {
  const x = v as { toArray?: () => Float32Array } | Float32Array | number[];
  if (x instanceof Float32Array) return x;
  if (Array.isArray(x)) return Float32Array.from(x);
  return Float32Array.from(x.toArray!());
}

type FolderState = 'missing' | 'empty' | 'incomplete' | 'table';

function folderState(dir: string): FolderState {
  let entries: string[];
  try {
    const st = fs.statSync(dir);
    if (!st.isDirectory()) throw new IndexFolderError(`${dir}: is a file, not an index folder`);
    entries = fs.readdirSync(dir);
  } catch (err) {
    if (err instanceof IndexFolderError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw new IndexFolderError(`${dir}: cannot read the index folder (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  // __manifest: LanceDB's own catalogue of the folder's tables
  const ours = entries.filter((e) => !e.startsWith(LOCK_NAME) && e !== '__manifest');
  if (ours.length === 0) return 'empty';
  const tableDir = `${TABLE_NAME}.lance`;
  if (!ours.includes(tableDir)) {
    const shown = ours.slice(0, 3).join(', ') + (ours.length > 3 ? `, … (${ours.length} entries)` : '');
    throw new IndexFolderError(`${dir}: not an altclip image index (it holds ${shown}); give a new or empty folder as --db`);
  }
  const others = ours.filter((e) => e !== tableDir);
  if (others.length > 0) {
    throw new IndexFolderError(`${dir}: not an altclip image index (besides ${tableDir} it holds ${others.slice(0, 3).join(', ')})`);
  }
  // Only a verified absence of versions means "never committed"; anything unreadable is an error that
  // changes nothing (the caller would otherwise start the table over).
  const table = path.join(dir, tableDir);
  const list = (sub: string): string[] | undefined => {
    try {
      return fs.readdirSync(path.join(table, sub));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new IndexFolderError(`${path.join(table, sub)}: cannot read the index's ${sub} folder (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); nothing was changed`);
    }
  };
  list(''); // the table folder itself must be readable
  const versions = (list('_versions') ?? []).filter((v) => v.endsWith('.manifest'));
  if (versions.length > 0) return 'table';
  const data = list('data') ?? [];
  if (data.length > 0) {
    throw new IndexFolderError(`${table}: holds data files but no committed version (_versions is empty); the index is damaged, nothing was changed`);
  }
  return 'incomplete';
}

function readMetadata(dir: string, schema: Arrow.Schema): IndexMetadata {
  const raw = schema.metadata.get(METADATA_KEY);
  const fields = schema.fields.map((f) => `${f.name}:${f.type}`);
  if (!raw) throw new IndexFolderError(`${dir}: table ${TABLE_NAME} is not an altclip image index (no "${METADATA_KEY}" schema metadata)`);
  let meta: IndexMetadata;
  try {
    meta = JSON.parse(raw) as IndexMetadata;
  } catch {
    throw new IndexFolderError(`${dir}: the index metadata is damaged (not JSON)`);
  }
  if (meta.format !== FORMAT) throw new IndexFolderError(`${dir}: not an altclip image index (format ${JSON.stringify(meta.format)})`);
  if (meta.schemaVersion > SCHEMA_VERSION) {
    throw new IndexFolderError(`${dir}: index schema version ${meta.schemaVersion} was written by a newer altclip (this one reads ${SCHEMA_VERSION})`);
  }
  const expected = [...FIELDS, `vector:FixedSizeList[${meta.projectionDim}]<Float32>`];
  if (fields.join(',') !== expected.join(',')) {
    throw new IndexFolderError(`${dir}: the index table has columns ${fields.join(', ')}; expected ${expected.join(', ')}`);
  }
  return meta;
}

function damaged(dir: string, err: unknown): Error {
  if (err instanceof IndexFolderError) return err;
  const message = (err instanceof Error ? err.message : String(err)).split('\n')[0]!.trim();
  return new IndexFolderError(`${dir}: the index is damaged or unreadable (LanceDB: ${message})`);
}
