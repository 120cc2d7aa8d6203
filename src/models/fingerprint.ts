// A model's identity by its weights: what an image index records so that it never mixes two models'
// vectors, and recognises the same model under a new path.
//
//   fingerprint = { files: { "config.json": sha256, "model.safetensors": sha256, ... }, dtype, q8Scheme }
//
// The files are config.json and the weight files loadWeights() reads (one file, or every shard),
// named relative to the model folder, so a moved folder has the same fingerprint. A file's sha256 is
// computed once and kept under <graph cache>/hashes/, keyed by device, inode, size and mtime (as the
// graph cache keys its sources): a second run, or a folder moved on the same disk, rehashes nothing;
// overwritten weights get a new mtime (or inode) and are hashed again.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../fsutil.js';
import { SHA256 } from '../hub/cache.js';
import { resolveFile } from '../hub/index.js';
import { sha256File } from '../search/files.js';
import { loadWeights } from '../weights/index.js';
import { defaultGraphCacheDir } from './graph_cache.js';
import { q8SchemeOf } from './quantize.js';

export type Dtype = 'fp32' | 'q8';

export interface ModelFingerprint {
  /** sha256 of config.json and of each weight file, by its path relative to the model folder */
  files: Record<string, string>;
  dtype: Dtype;
  /** dtype q8: the name of the q8 scheme its vectors are made with (quantize.ts q8SchemeOf); null for fp32 */
  q8Scheme: string | null;
}

/** What an index records about its model (IndexMetadata has this shape). */
export interface RecordedModel {
  /** hub repo id, or the real path of a local folder */
  model: string;
  revision: string | null;
  dtype: Dtype;
  /** absent in indexes made before fingerprints were recorded */
  fingerprint?: ModelFingerprint;
}

/** The model to load for an index: the recorded one, or the same weights under the path asked for. */
export interface ResolvedModel {
  model: string;
  revision: string | null;
  dtype: Dtype;
  /** null: an index without a recorded fingerprint, used under its recorded path */
  fingerprint: ModelFingerprint | null;
  /** the same weights found under a new path: the sentence saying so (also emitted as a warning) */
  moved?: string;
}

export interface FingerprintOptions {
  dtype?: Dtype;
  /** hub commit (null / undefined: a local folder, or the hub's main) */
  revision?: string | null;
  /** where the hashes are kept (default: the graph cache folder) */
  cacheDir?: string;
}

/** The fingerprint of `model` (a local folder or a hub repo id) in `dtype`. */
export async function modelFingerprint(model: string, options: FingerprintOptions = {}): Promise<ModelFingerprint> {
  const dtype = options.dtype ?? 'fp32';
  const hub = options.revision ? { revision: options.revision } : {};
  const config = (await resolveFile(model, 'config.json', hub)) as string;
  const root = path.dirname(config);
  const weights = (await loadWeights(model, hub)).files;
  const files: Record<string, string> = {};
  for (const file of [config, ...weights]) files[nameIn(root, file)] = await cachedSha256(file, options.cacheDir);
  return { files, dtype, q8Scheme: dtype === 'q8' ? (await q8SchemeOf(model, hub)).name : null };
}

/**
 * `file`'s name relative to the model folder `root`, "/"-separated. A hub snapshot's files are links to
 * ../../blobs/<etag> (hub/cache.ts) and the weights are opened through them: the link names the file.
 */
function nameIn(root: string, file: string): string {
  const rel = (f: string) => path.relative(root, f).split(path.sep).join('/');
  if (!rel(file).startsWith('../') && !path.isAbsolute(rel(file))) return rel(file);
  const real = fs.realpathSync(file);
  for (const entry of fs.readdirSync(root, { recursive: true }) as string[]) {
    const p = path.join(root, entry);
    try {
      if (fs.realpathSync(p) === real && !fs.statSync(p).isDirectory()) return rel(p);
    } catch {
      // a dangling link: not this file
    }
  }
  return path.basename(file);
}

/** What differs between two fingerprints, one phrase per difference (empty: the same model). */
export function fingerprintChanges(recorded: ModelFingerprint, now: ModelFingerprint): string[] {
  const changes: string[] = [];
  const short = (h: string) => h.slice(0, 12);
  for (const [name, hash] of Object.entries(recorded.files)) {
    const current = now.files[name];
    if (current === undefined) changes.push(`${name} is gone`);
    else if (current !== hash) changes.push(`${name} changed (sha256 ${short(hash)}… → ${short(current)}…)`);
  }
  for (const name of Object.keys(now.files)) if (!(name in recorded.files)) changes.push(`${name} is new`);
  if (recorded.dtype !== now.dtype) changes.push(`dtype ${recorded.dtype} → ${now.dtype}`);
  else if (recorded.q8Scheme !== now.q8Scheme) changes.push(`q8 scheme ${recorded.q8Scheme} → ${now.q8Scheme}`);
  return changes;
}

/** The name a model is recorded under: a local folder's real path, a hub repo id as is. */
export function modelKey(model: string): string {
  try {
    if (fs.statSync(model).isDirectory()) return fs.realpathSync(model);
  } catch {
    // not a local folder
  }
  return model;
}

const MODEL_MISMATCH = 'Embeddings of different models are not comparable: use another --db';

/**
 * The model of the index `where` recorded as `recorded`, given the --model / --dtype asked for (if any):
 * - nothing asked: the recorded model, whose weights must still be those recorded;
 * - another dtype: refused;
 * - another path with the recorded weights: accepted (a warning says the model moved);
 * - other weights (under any path, the recorded one included): refused, naming what changed.
 * Throws an Error whose message starts with `where`.
 */
export async function resolveModel(
  where: string, recorded: RecordedModel, requested: { model?: string; dtype?: Dtype } = {}, options: { cacheDir?: string; hash?: boolean } = {},
): Promise<ResolvedModel> {
  const model = requested.model !== undefined ? modelKey(requested.model) : recorded.model;
  const dtype = requested.dtype ?? recorded.dtype;
  const was = `${recorded.model}${recorded.revision ? `@${recorded.revision.slice(0, 12)}` : ''} (${recorded.dtype})`;
  if (dtype !== recorded.dtype) {
    throw new Error(`${where}: the index was built with ${was}; this run asks for ${model} (${dtype}). ${MODEL_MISMATCH}, or leave out --dtype`);
  }
  const samePath = model === recorded.model;
  if (!recorded.fingerprint) {
    // An index from before fingerprints: only its recorded path can be trusted.
    if (samePath) return { model, revision: recorded.revision, dtype, fingerprint: null };
    throw new Error(`${where}: the index was built with ${was}; this run asks for ${model}, and the index records no fingerprint `
      + `of its model's weights (made by an older altclip) to recognise them by. ${MODEL_MISMATCH}, or leave out --model`);
  }
  const revision = samePath ? recorded.revision : null;
  // hash: false: the caller checks the fingerprint that comes with the vectors (a fleet's shard files)
  if (options.hash === false) return { model, revision, dtype, fingerprint: recorded.fingerprint };
  let now: ModelFingerprint;
  try {
    now = await modelFingerprint(model, { dtype, revision, ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}) });
  } catch (err) {
    const reason = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    const hint = samePath && !isHubId(model) ? ' If the model folder moved, give its new path with --model <folder>.' : '';
    throw new Error(`${where}: cannot read the index's model ${samePath ? was : model} (${reason}).${hint}`);
  }
  const changes = fingerprintChanges(recorded.fingerprint, now);
  if (changes.length > 0) {
    throw new Error(`${where}: the index was built with ${was}; ${samePath ? 'the files there have changed since' : `this run asks for ${model} (${dtype}), whose files differ`}: `
      + `${changes.join('; ')}. ${MODEL_MISMATCH}${samePath ? ', or put back the files the index was built with' : ''}`);
  }
  if (samePath) return { model, revision, dtype, fingerprint: now };
  const moved = `${where}: the index records its model at ${recorded.model}; the same weights are at ${model}, used instead `
    + `(the index keeps its recorded path: give --model ${model} each time)`;
  // said once per process (index, search and serve may each resolve the same db)
  if (!warned.has(moved)) process.emitWarning(moved, 'AltCLIPWarning');
  warned.add(moved);
  return { model, revision, dtype, fingerprint: now, moved };
}

const warned = new Set<string>();

function isHubId(model: string): boolean {
  return !path.isAbsolute(model);
}

// ---------------------------------------------------------------------------------------------
// sha256 of a file, computed once per (device, inode, size, mtime).

interface HashRecord { path: string; dev: string; ino: string; size: string; mtimeNs: string; sha256: string }

function statKey(file: string): Omit<HashRecord, 'sha256' | 'path'> {
  const s = fs.statSync(file, { bigint: true });
  return { dev: String(s.dev), ino: String(s.ino), size: String(s.size), mtimeNs: String(s.mtimeNs) };
}

/** sha256 of `file` (links followed), from the hash cache when its device, inode, size and mtime are unchanged. */
export async function cachedSha256(file: string, cacheDir: string = defaultGraphCacheDir()): Promise<string> {
  const real = fs.realpathSync(file);
  const key = statKey(real);
  const record = path.join(cacheDir, 'hashes', `${key.dev}-${key.ino}-${key.size}-${key.mtimeNs}.json`);
  try {
    const cached = JSON.parse(fs.readFileSync(record, 'utf8')) as HashRecord;
    if (SHA256.test(cached.sha256) && cached.size === key.size && cached.mtimeNs === key.mtimeNs) return cached.sha256;
  } catch {
    // not hashed yet (or an unreadable record: hashed again)
  }
  const sha256 = await sha256File(real);
  // A file rewritten while it was read is not cached: the next run hashes what is there then.
  const after = statKey(real);
  if (after.size === key.size && after.mtimeNs === key.mtimeNs && after.ino === key.ino) {
    try {
      fs.mkdirSync(path.dirname(record), { recursive: true });
      writeFileAtomic(record, `${JSON.stringify({ path: real, ...key, sha256 } satisfies HashRecord)}\n`);
    } catch {
      // a read-only cache: hashed again next time
    }
  }
  return sha256;
}
