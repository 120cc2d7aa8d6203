// The index folder: one LanceDB table `images` (schema declared once, below), whose Arrow schema
// metadata records which model made the vectors. LanceDB commits each write as a new table version
// (data files first, then an atomic manifest), so a writer killed at any moment leaves the last
// committed version intact; rows are upserted by path (merge-insert), so a re-run never duplicates.
// The same table is readable from Python: lancedb.connect(dir).open_table("images").to_pandas().
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
      // A creation killed before its first commit leaves a table folder without a version: start over.
      if (state === 'incomplete') fs.rmSync(path.join(dir, `${TABLE_NAME}.lance`), { recursive: true, force: true });
      const db = await lancedb.connect(dir, { readConsistencyInterval: 0 });
      const table = await db.createEmptyTable(TABLE_NAME, schemaFor(options.create));
      return new ImageStore(dir, table, options.create, ann);
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

  /** Every row's path, size, mtime and hash (no vectors). */
  async files(): Promise<Map<string, StoredFile>> {
    const out = new Map<string, StoredFile>();
    try {
      for await (const batch of this.table.query().select(['path', 'size', 'mtime', 'sha256'])) {
        const [p, s, m, h] = ['path', 'size', 'mtime', 'sha256'].map((n) => batch.getChild(n)!);
        for (let i = 0; i < batch.numRows; i++) {
          const file = { path: p!.get(i) as string, size: Number(s!.get(i)), mtime: m!.get(i) as number, sha256: h!.get(i) as string };
          out.set(file.path, file);
        }
      }
    } catch (err) {
      throw damaged(this.dir, err);
    }
    return out;
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

  /** Inserts or replaces rows by path, in one commit. */
  async upsert(rows: StoredRow[]): Promise<void> {
    if (rows.length === 0) return;
    const data = lancedb.makeArrowTable(
      rows.map((r) => ({ path: r.path, size: BigInt(r.size), mtime: r.mtime, sha256: r.sha256, vector: Array.from(r.vector) })),
      { schema: schemaFor(this.metadata) },
    );
    await this.guard(() => this.table.mergeInsert('path').whenMatchedUpdateAll().whenNotMatchedInsertAll().execute(data));
  }

  /** Deletes the rows of `paths`, 500 per commit. */
  async delete(paths: string[]): Promise<void> {
    for (let start = 0; start < paths.length; start += 500) {
      const filter = `path IN (${paths.slice(start, start + 500).map(sqlString).join(', ')})`;
      await this.guard(() => this.table.delete(filter));
    }
  }

  async count(): Promise<number> {
    return this.guard(() => this.table.countRows());
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
    let q = this.table.vectorSearch(query).distanceType('cosine').limit(k).select(['path', 'vector', '_distance']);
    if (await this.hasAnnIndex()) q = q.nprobes(this.ann.nprobes).refineFactor(this.ann.refineFactor);
    const rows = await this.guard(() => q.toArray());
    return rows.map((r) => ({ path: r.path as string, vector: vectorOf(r.vector) }));
  }

  /**
   * After writes: builds the approximate index once the table is big enough, folds new rows into an
   * existing one, and compacts the small fragments that batch-by-batch commits leave.
   */
  async maintain(): Promise<void> {
    const rows = await this.count();
    if (await this.hasAnnIndex()) {
      await this.guard(() => this.table.optimize({ cleanupOlderThan: new Date(Date.now() - 60 * 60 * 1000) }));
    } else {
      await this.guard(() => this.table.optimize({ cleanupOlderThan: new Date(Date.now() - 60 * 60 * 1000) }));
      if (rows >= this.ann.minRows) await this.buildAnnIndex(rows);
    }
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

  private async guard<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw damaged(this.dir, err);
    }
  }
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
  let versions: string[] = [];
  try {
    versions = fs.readdirSync(path.join(dir, tableDir, '_versions')).filter((v) => v.endsWith('.manifest'));
  } catch {
    // no _versions folder: nothing was ever committed
  }
  return versions.length === 0 ? 'incomplete' : 'table';
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
