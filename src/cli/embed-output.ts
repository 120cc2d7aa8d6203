// The files `altclip embed` writes, and what keeps them consistent:
//   <out>            the embeddings (.npy matrix, or JSON lines with the embedding on each line)
//   <out>.rows.jsonl which input each .npy row is (npy only; <out> without .npy + .rows.jsonl)
//   <out>.meta.json  the model, revision, dtype (and q8 scheme) and normalisation of every row (checked by --resume)
//   <out>.lock       held while a run writes (proper-lockfile: a second writer is refused; the lock of
//                    a process that died is taken over once its mtime is LOCK_STALE_MS old)
import * as fs from 'node:fs';
import * as path from 'node:path';
import lockfile from 'proper-lockfile';
import { writeFileAtomic } from '../fsutil.js';
import type { ModelIdentity } from '../tasks/types.js';
import { CliError } from './errors.js';
import { q8SchemeName } from '../models/quantize.js';
import { NpyAppender } from './npy.js';

/** What one output row is the embedding of. */
export interface RowInput {
  type: 'image' | 'text';
  /** As given on the command line (or the text itself). */
  input: string;
  /** A local image's resolved path: what --resume compares, so `a.jpg` and `/abs/a.jpg` are one image. */
  path?: string;
}

/** Everything that must be equal for rows to belong in one file. */
export interface EmbedMeta {
  model: string;
  revision: string | null;
  dtype: 'fp32' | 'q8';
  /**
   * dtype "q8": the scheme's name (models/quantize.ts' q8Scheme); absent for fp32. A q8 record without it
   * was written before schemes were named (its numbers depended on the CPU): --resume refuses it.
   */
  q8Scheme?: string | null;
  normalize: boolean;
}

export const LOCK_STALE_MS = 30_000;

export function rowsFileOf(out: string): string {
  return `${out.replace(/\.npy$/i, '')}.rows.jsonl`;
}

export function metaFileOf(out: string): string {
  return `${out}.meta.json`;
}

export function keyOf(r: RowInput): string {
  return `${r.type}\n${r.path ?? r.input}`;
}

/** The row of a local image or URL (`path` only for local files). */
export function imageRow(input: string, isUrl: boolean): RowInput {
  if (isUrl) return { type: 'image', input };
  let resolved = path.resolve(input);
  try {
    resolved = fs.realpathSync(resolved);
  } catch {
    // gone since it was listed: the resolved path still names it
  }
  return { type: 'image', input, path: resolved };
}

/**
 * An exclusive lock on `out` for this process; `onLost` is called if another process takes it over
 * (only possible after this one stopped updating it for LOCK_STALE_MS). Resolves to its release.
 */
export async function lockOutput(out: string, onLost: (err: Error) => void): Promise<() => Promise<void>> {
  // One lock per file on disk, however it is named (relative, absolute, through a symlinked folder).
  let dir: string;
  try {
    dir = fs.realpathSync(path.dirname(path.resolve(out)));
  } catch {
    throw new CliError(`${out}: the folder ${path.dirname(out)} does not exist`);
  }
  const target = path.join(dir, path.basename(out));
  try {
    return await lockfile.lock(target, {
      realpath: false,
      stale: LOCK_STALE_MS,
      update: 5_000,
      retries: 0,
      onCompromised: onLost,
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOCKED') {
      throw new CliError(
        `${out} is being written by another altclip process (lock: ${target}.lock); wait for it to finish ` +
          `(a lock left by a process that was killed is taken over ${LOCK_STALE_MS / 1000} s after it stopped)`,
      );
    }
    throw new CliError(`cannot lock ${out}: ${(err as Error).message}`);
  }
}

function describeMeta(m: EmbedMeta): string {
  const revision = m.revision ? ` @ ${m.revision.slice(0, 12)}` : '';
  const dtype = m.dtype === 'q8' ? `q8 (scheme ${m.q8Scheme ?? 'unrecorded: made before q8 schemes were named'})` : m.dtype;
  return `${m.model}${revision}, ${dtype}, ${m.normalize ? 'normalised' : 'not normalised (--no-normalize)'}`;
}

export function metaOf(identity: ModelIdentity | undefined, modelArg: string, normalize: boolean, dtype: 'fp32' | 'q8' | undefined): EmbedMeta {
  return {
    model: identity?.model ?? modelArg,
    revision: identity?.revision ?? null,
    dtype: identity?.dtype ?? dtype ?? 'fp32',
    ...((identity?.dtype ?? dtype) === 'q8' ? { q8Scheme: q8SchemeName() } : {}),
    normalize,
  };
}

/** The output files, opened for a new run (`resume` false: replaced on the first write) or resumed. */
export abstract class EmbedSink {
  readonly done = new Set<string>();
  rows = 0;
  cols?: number;
  /** What the existing rows were computed with (resume of a non-empty output). */
  protected existing?: EmbedMeta;
  private meta?: EmbedMeta;

  constructor(protected readonly out: string, resume: boolean) {
    if (!resume || !fs.existsSync(out)) return;
    const metaFile = metaFileOf(out);
    let meta: unknown;
    try {
      meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'is missing' : 'cannot be read';
      throw new CliError(`cannot resume ${out}: ${metaFile}, which records the model its rows come from, ${why}; use --overwrite to start again`);
    }
    if (!isMeta(meta)) throw new CliError(`cannot resume ${out}: ${metaFile} is not an altclip embed record; use --overwrite to start again`);
    this.existing = meta;
  }

  /** Every later row is computed with `meta`: refuses to add them to rows computed otherwise. */
  use(meta: EmbedMeta): void {
    const e = this.existing;
    if (e && (e.model !== meta.model || e.revision !== meta.revision || e.dtype !== meta.dtype || e.normalize !== meta.normalize
      || (e.q8Scheme ?? null) !== (meta.q8Scheme ?? null))) {
      throw new CliError(
        `cannot resume ${this.out}: its rows come from ${describeMeta(e)}, but this run uses ${describeMeta(meta)}; ` +
          'use the same model and options, or --overwrite / another --out',
      );
    }
    this.meta = meta;
  }

  /** `rows[k]` is the embedding of `inputs[k]`. */
  write(inputs: RowInput[], rows: Float32Array[]): void {
    const cols = rows[0]!.length;
    if (this.cols !== undefined && this.cols !== cols) {
      throw new CliError(`${this.out} holds ${this.cols}-dim embeddings but this model gives ${cols}-dim ones`);
    }
    if (!this.started()) {
      if (!this.meta) throw new Error('EmbedSink.write before use()');
      this.start(cols);
      writeFileAtomic(metaFileOf(this.out), `${JSON.stringify({ altclip: 'embed', ...this.meta, dim: cols }, null, 2)}\n`);
    }
    this.cols = cols;
    this.append(inputs, rows);
    this.rows += inputs.length;
  }

  abstract close(): void;
  protected abstract started(): boolean;
  /** Creates the (empty) output files. */
  protected abstract start(cols: number): void;
  protected abstract append(inputs: RowInput[], rows: Float32Array[]): void;
}

/** `out` = the .npy matrix, `rowsFileOf(out)` = which input each row is. */
export class NpySink extends EmbedSink {
  private npy?: NpyAppender;
  private readonly rowsFile: string;

  constructor(out: string, resume: boolean) {
    super(out, resume);
    this.rowsFile = rowsFileOf(out);
    if (!this.existing) return;
    if (!fs.existsSync(this.rowsFile)) throw new CliError(`cannot resume ${out}: ${this.rowsFile}, which names its rows, is missing`);
    const listed = readJsonLines<RowInput>(this.rowsFile).items.filter(isRowInput);
    try {
      this.npy = NpyAppender.open(out, listed.length);
    } catch (err) {
      throw new CliError(`cannot resume ${out}: ${(err as Error).message}`);
    }
    // A run stopped mid-batch leaves at most one of the two files longer: keep what both hold.
    const kept = listed.slice(0, this.npy.rows);
    fs.writeFileSync(this.rowsFile, kept.map((r) => `${JSON.stringify(r)}\n`).join(''));
    for (const r of kept) this.done.add(keyOf(r));
    this.rows = this.npy.rows;
    this.cols = this.npy.cols;
  }

  protected started(): boolean {
    return this.npy !== undefined;
  }

  protected start(cols: number): void {
    this.npy = NpyAppender.create(this.out, cols);
    fs.writeFileSync(this.rowsFile, '');
  }

  protected append(inputs: RowInput[], rows: Float32Array[]): void {
    const cols = rows[0]!.length;
    const data = new Float32Array(rows.length * cols);
    rows.forEach((r, i) => data.set(r, i * cols));
    // Rows first, then their names: an interruption between the two is repaired by the next --resume.
    this.npy!.append(data);
    fs.appendFileSync(this.rowsFile, inputs.map((r) => `${JSON.stringify(r)}\n`).join(''));
  }

  close(): void {
    this.npy?.close();
  }
}

/** One {"type","input","path"?,"embedding"} object per line. */
export class JsonlSink extends EmbedSink {
  private isStarted = false;

  constructor(out: string, resume: boolean) {
    super(out, resume);
    if (!this.existing) return;
    const { items, validBytes } = readJsonLines<RowInput & { embedding: number[] }>(out);
    if (!items.every((r) => isRowInput(r) && Array.isArray(r.embedding))) {
      throw new CliError(`cannot resume ${out}: it is not a JSON-lines file written by altclip embed`);
    }
    fs.truncateSync(out, validBytes); // drop a line cut short by an interruption
    for (const r of items) this.done.add(keyOf(r));
    this.rows = items.length;
    this.cols = items[0]?.embedding?.length;
    this.isStarted = true;
  }

  protected started(): boolean {
    return this.isStarted;
  }

  protected start(): void {
    fs.writeFileSync(this.out, '');
    this.isStarted = true;
  }

  protected append(inputs: RowInput[], rows: Float32Array[]): void {
    const lines = inputs.map((r, i) => {
      // 9 significant digits give back the exact float32 value.
      const embedding = Array.from(rows[i]!, (x) => Number(x.toPrecision(9)));
      return `${JSON.stringify({ ...r, embedding })}\n`;
    });
    fs.appendFileSync(this.out, lines.join(''));
  }

  close(): void {}
}

function isRowInput(r: unknown): r is RowInput {
  const x = r as RowInput;
  return typeof x === 'object' && x !== null && (x.type === 'image' || x.type === 'text') && typeof x.input === 'string'
    && (x.path === undefined || typeof x.path === 'string');
}

function isMeta(m: unknown): m is EmbedMeta {
  const x = m as EmbedMeta & { altclip?: string };
  return typeof x === 'object' && x !== null && x.altclip === 'embed' && typeof x.model === 'string'
    && (x.revision === null || typeof x.revision === 'string') && (x.dtype === 'fp32' || x.dtype === 'q8')
    && (x.q8Scheme === undefined || x.q8Scheme === null || typeof x.q8Scheme === 'string') && typeof x.normalize === 'boolean';
}

/** The complete, parseable lines at the start of a JSON-lines file. */
function readJsonLines<T>(file: string): { items: T[]; validBytes: number } {
  const buf = fs.readFileSync(file);
  const items: T[] = [];
  let start = 0;
  for (let nl = buf.indexOf(0x0a, start); nl !== -1; nl = buf.indexOf(0x0a, start)) {
    try {
      items.push(JSON.parse(buf.subarray(start, nl).toString('utf8')) as T);
    } catch {
      break;
    }
    start = nl + 1;
  }
  return { items, validBytes: start };
}
