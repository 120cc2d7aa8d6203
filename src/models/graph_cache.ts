// The graph cache: from a built graph to a session, with the weights read straight from the checkpoint.
//
// ONNX external data must resolve inside the .onnx file's folder (absolute paths, "../" and symlinks
// that leave the folder are refused), so each graph goes into a cache folder together with a hard
// link to every weight file it references: no copy, and a read-only checkpoint folder (or the HF
// cache, whose snapshot files are symlinks) works. Files are written atomically (fsutil.ts) and reused.
//
// Layout of a cache folder (ALTCLIP_CACHE, else $XDG_CACHE_HOME/altclip, else ~/.cache/altclip):
//   graphs/<tower>[-full][-interp][-<q8 scheme name>]-<key>/
//     model.onnx              the graph (key: sha256 of its bytes and of the weight files' identity)
//     weights-<i>.<ext>       hard links to the checkpoint files (no extra disk space while they exist)
//     source.json             the files linked (path, device, inode, size, mtime): for list / prune
//     prepacked-<cpu tag>/    cachePrepacked: onnxruntime's optimized graph with packed weights
//   q8/<id>-w<7|8>.safetensors dtype "q8": int8 weights (quantize.ts; the scheme's weight bits), with <id>-w<bits>.json naming their source
// An entry whose source file is gone or changed (a deleted or re-downloaded model) is never used again
// and holds the old weights' disk space through its hard links: pruneCache() removes such entries.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';

import { isTempPath, replaceAtomically, replaceAtomicallyAsync, tempWriterGone, writeFileAtomic } from '../fsutil.js';
import type { GraphBuilder } from '../onnx/graph.js';
import { openSession, sessionOptions, type Session, type SessionOptions } from './session.js';

const OPSETS = { '': 17, 'com.microsoft': 1 };

export function defaultGraphCacheDir(): string {
  if (process.env.ALTCLIP_CACHE) return process.env.ALTCLIP_CACHE;
  const xdg = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(xdg, 'altclip');
}

// ---------------------------------------------------------------------------------------------
// Which folder: the configured one, else a per-user folder in the OS temp folder, else none.

/** <tmpdir>/altclip-cache-<uid>, if it is (or can be made) a private folder of this user; else null. */
function tempCacheDir(): string | null {
  const uid = process.getuid?.();
  const dir = path.join(os.tmpdir(), `altclip-cache-${uid ?? os.userInfo().username}`);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const s = fs.lstatSync(dir);
    // another user's folder (or a link planted in a shared /tmp) is not ours to fill
    if (!s.isDirectory() || (uid !== undefined && s.uid !== uid)) return null;
    return dir;
  } catch {
    return null;
  }
}

const warned = new Set<string>();
function warnOnce(key: string, message: string): void {
  if (warned.has(key)) return;
  warned.add(key);
  process.emitWarning(message, 'AltCLIPWarning');
}

const isFsError = (e: unknown) => typeof (e as NodeJS.ErrnoException).code === 'string';

/**
 * `use(root)` on the configured cache folder, else on the temp fallback (a warning once per folder
 * says which and why). File-system errors move on to the next folder; others are thrown. Returns
 * undefined when no folder worked.
 */
export function withCacheDir<T>(configured: string | undefined, what: string, use: (root: string) => T | undefined): T | undefined {
  const primary = configured ?? defaultGraphCacheDir();
  const fallback = tempCacheDir();
  const roots = fallback && path.resolve(fallback) !== path.resolve(primary) ? [primary, fallback] : [primary];
  let reason = '';
  for (const root of roots) {
    try {
      const result = use(root);
      if (result !== undefined) {
        if (root !== primary) warnOnce(`${primary}>${root}`, `cannot use the cache folder ${primary} for ${what} (${reason}); using ${root} instead`);
        return result;
      }
      reason ||= 'cannot hard-link the weights there (another file system?)';
    } catch (e) {
      if (!isFsError(e)) throw e;
      reason ||= `${(e as NodeJS.ErrnoException).code}: ${(e as Error).message}`;
    }
  }
  warnOnce(`${primary}>none`, `no writable cache folder for ${what} (${primary}: ${reason}); `
    + 'loading the weights into memory instead (uses more memory)');
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Entries and their sources.

interface SourceFile { path: string; dev: number; ino: number; size: number; mtimeMs: number }
interface Manifest { sources: SourceFile[] }

function sourceFile(file: string): SourceFile {
  const s = fs.statSync(file);
  return { path: file, dev: s.dev, ino: s.ino, size: s.size, mtimeMs: s.mtimeMs };
}

const identity = (s: SourceFile) => `${s.path}:${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;

/** The manifest naming the files an entry was made from (written once, atomically). */
export function writeManifest(file: string, sources: string[]): void {
  if (!fs.existsSync(file)) writeFileAtomic(file, `${JSON.stringify({ sources: sources.map(sourceFile) } satisfies Manifest, null, 1)}\n`);
}

/** Why an entry made from `manifest` is stale (a source gone or changed), or null while it is current. */
function staleReason(manifestFile: string): string | null {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as Manifest;
    if (!Array.isArray(manifest.sources)) throw new Error('no sources');
  } catch {
    return 'no record of its source';
  }
  for (const s of manifest.sources) {
    let now: SourceFile;
    try {
      now = sourceFile(s.path);
    } catch {
      return `source ${s.path} is gone`;
    }
    if (identity(now) !== identity(s)) return `source ${s.path} has changed`;
  }
  return null;
}

/** Writes the graph file unless it already holds exactly `bytes` (a damaged cached copy is replaced). */
function writeUnlessSame(file: string, bytes: Uint8Array): void {
  let current: Buffer | undefined;
  try {
    current = fs.readFileSync(file);
  } catch { /* not there yet */ }
  if (!current || !current.equals(bytes)) writeFileAtomic(file, bytes);
}

/** Hard-links `target` as `link` (atomically replacing a stale link); false where the OS refuses (EXDEV, EPERM). */
function hardLink(target: string, link: string): boolean {
  const a = fs.statSync(target);
  const b = fs.statSync(link, { throwIfNoEntry: false });
  if (b && a.ino === b.ino && a.dev === b.dev) return true;
  try {
    replaceAtomically(link, (tmp) => fs.linkSync(target, tmp));
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EXDEV' || code === 'EPERM' || code === 'EMLINK' || code === 'ENOTSUP') return false;
    throw e;
  }
}

function fileIdentity(file: string): string {
  return identity(sourceFile(file));
}

/** This CPU and onnxruntime build: optimized graphs with prepacked weights are only valid for these. */
function machineTag(): string {
  let flags = '';
  try {
    flags = /^flags\s*:(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
  } catch { /* not Linux */ }
  const ortVersion = (ort.env.versions as Record<string, string> | undefined)?.common ?? '';
  return createHash('sha256').update(`${os.cpus()[0]?.model}|${process.arch}|${flags}|${ortVersion}`).digest('hex').slice(0, 12);
}

/**
 * A session from onnxruntime's own optimized copy of `model` with the GEMM weights already packed
 * (session.save_external_prepacked_constant_initializers), written once into a folder that appears
 * whole and loaded directly afterwards.
 */
async function prepackedSession(label: string, dir: string, model: string, opts: ort.InferenceSession.SessionOptions,
  options: SessionOptions): Promise<Session> {
  const packed = path.join(dir, `prepacked-${machineTag()}`);
  const optimized = path.join(packed, 'model.onnx');
  if (fs.existsSync(optimized)) {
    try {
      return await openSession(label, optimized, { ...opts, graphOptimizationLevel: 'disabled' }, options);
    } catch (e) {
      // a damaged copy (onnxruntime refuses it): made again below
      process.emitWarning(`rebuilding ${packed}: ${(e as Error).message}`, 'AltCLIPWarning');
      fs.rmSync(packed, { recursive: true, force: true });
    }
  }
  return replaceAtomicallyAsync(packed, async (tmp) => {
    fs.mkdirSync(tmp, { recursive: true });
    return openSession(label, model, {
      ...opts,
      optimizedModelFilePath: path.join(tmp, 'model.onnx'),
      logSeverityLevel: 3, // its warning that the optimized graph is CPU-specific: machineTag() sees to that
      extra: {
        session: {
          save_external_prepacked_constant_initializers: '1',
          optimized_model_external_initializers_file_name: 'model.data',
          optimized_model_external_initializers_min_size_in_bytes: '1024',
        },
      },
    }, options);
  }, { keepExisting: true }); // another process got there first: its copy is as good
}

/**
 * An onnxruntime session for the graph in `g`, from its cache folder (see withCacheDir for the
 * fallbacks); with no usable folder, onnxruntime gets the weights in memory (a copy: a warning says so).
 */
export async function createSession(g: GraphBuilder, options: SessionOptions): Promise<Session> {
  const files = g.referencedFiles();
  const names = new Map(files.map((f, i) => [f, `weights-${i}${path.extname(f)}`]));
  const bytes = g.encode((f) => names.get(f)!, OPSETS);
  const key = createHash('sha256').update(bytes).update(files.map(fileIdentity).join('\n')).digest('hex').slice(0, 24);
  const opts = sessionOptions(options);

  const model = withCacheDir(options.graphCacheDir, 'graphs', (root) => {
    const dir = path.join(root, 'graphs', `${g.name}-${key}`);
    fs.mkdirSync(dir, { recursive: true });
    if (!files.every((f) => hardLink(f, path.join(dir, names.get(f)!)))) return undefined;
    writeManifest(path.join(dir, 'source.json'), files);
    writeUnlessSame(path.join(dir, 'model.onnx'), bytes);
    return path.join(dir, 'model.onnx');
  });
  if (model === undefined) {
    const externalData = files.map((f) => ({ path: names.get(f)!, data: fs.readFileSync(f) }));
    return openSession(g.name, bytes, { ...opts, externalData }, options);
  }
  if (options.cachePrepacked) return prepackedSession(g.name, path.dirname(model), model, opts, options);
  return openSession(g.name, model, opts, options);
}

// ---------------------------------------------------------------------------------------------
// altclip cache list | prune

export interface CacheEntry {
  /** Absolute path of the entry (a folder under graphs/, a file under q8/, or a leftover temporary). */
  path: string;
  kind: 'graph' | 'q8' | 'temporary';
  /**
   * Bytes the cache alone holds for this entry: hard links the checkpoint still shares count nothing,
   * the old weights of a deleted / replaced model count in full (in each entry linking them: use
   * freedBytes() for a total).
   */
  bytes: number;
  /** The checkpoint files it was made from. */
  sources: string[];
  /** Why it will never be used again (source gone or changed, a dead writer's leftover); null: current. */
  stale: string | null;
}

/** Every file under `p` (not following links) with its inode and size. */
function filesUnder(p: string, out: { key: string; size: number; nlink: number }[] = []): { key: string; size: number; nlink: number }[] {
  const s = fs.lstatSync(p, { throwIfNoEntry: false });
  if (s?.isDirectory()) for (const f of fs.readdirSync(p)) filesUnder(path.join(p, f), out);
  else if (s) out.push({ key: `${s.dev}:${s.ino}`, size: s.size, nlink: s.nlink });
  return out;
}

/** The bytes each entry's deletion would free (with listCache's link counts), kept off the public shape. */
const owned = new WeakMap<CacheEntry, Map<string, number>>();

/** Bytes that deleting all of `entries` frees (an inode shared by several entries counts once). */
export function freedBytes(entries: CacheEntry[]): number {
  const all = new Map<string, number>();
  for (const e of entries) for (const [k, size] of owned.get(e) ?? []) all.set(k, size);
  return [...all.values()].reduce((a, b) => a + b, 0);
}

function sourcesOf(manifestFile: string): string[] {
  try {
    return (JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as Manifest).sources.map((s) => s.path);
  } catch {
    return [];
  }
}

/** A dead writer's temporary: its writer (named in it, this host) is gone, or it is older than an hour. */
function leftover(dir: string, name: string): Omit<CacheEntry, 'bytes'> | null {
  const p = path.join(dir, name);
  if (!(isTempPath(name) || name.endsWith('.tmp') || name.endsWith('.incomplete'))) return null;
  const age = Date.now() - (fs.lstatSync(p, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
  return { path: p, kind: 'temporary', sources: [], stale: tempWriterGone(name) || age > 3_600_000 ? 'a temporary left by a stopped writer' : null };
}

/** Every entry of the cache folder `root` (default: defaultGraphCacheDir()). */
export function listCache(root: string = defaultGraphCacheDir()): CacheEntry[] {
  const found: (Omit<CacheEntry, 'bytes'> & { files: string[] })[] = [];
  const read = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);
  const graphs = path.join(root, 'graphs');
  for (const name of read(graphs)) {
    const dir = path.join(graphs, name);
    const temp = leftover(graphs, name);
    if (temp) { found.push({ ...temp, files: [dir] }); continue; }
    if (!fs.statSync(dir).isDirectory()) continue;
    const manifest = path.join(dir, 'source.json');
    let stale = staleReason(manifest);
    // written before manifests: a link the checkpoint no longer shares means its source is gone or replaced
    if (stale === 'no record of its source') {
      const links = fs.readdirSync(dir).filter((f) => f.startsWith('weights-'));
      stale = links.length && links.every((f) => fs.statSync(path.join(dir, f)).nlink > 1) ? null : stale;
    }
    found.push({ path: dir, kind: 'graph', sources: sourcesOf(manifest), stale, files: [dir] });
  }
  const q8 = path.join(root, 'q8');
  for (const name of read(q8)) {
    const temp = leftover(q8, name);
    if (temp) { found.push({ ...temp, files: [temp.path] }); continue; }
    if (!name.endsWith('.safetensors')) continue;
    const file = path.join(q8, name);
    const manifest = file.replace(/\.safetensors$/, '.json');
    found.push({ path: file, kind: 'q8', sources: sourcesOf(manifest), stale: staleReason(manifest), files: [file, manifest] });
  }
  // an inode all of whose links are in the cache is the cache's alone: deleting its entries frees it
  const perEntry = found.map((e) => e.files.flatMap((f) => filesUnder(f)));
  const linksInCache = new Map<string, number>();
  for (const f of perEntry.flat()) linksInCache.set(f.key, (linksInCache.get(f.key) ?? 0) + 1);
  return found.map(({ files: _files, ...e }, i) => {
    const own = new Map(perEntry[i]!.filter((f) => f.nlink <= linksInCache.get(f.key)!).map((f) => [f.key, f.size]));
    const entry: CacheEntry = { ...e, bytes: [...own.values()].reduce((a, b) => a + b, 0) };
    owned.set(entry, own);
    return entry;
  });
}

/** Removes the stale entries of `root` (see listCache); returns them. `dryRun`: only says which. */
export function pruneCache(root: string = defaultGraphCacheDir(), options: { dryRun?: boolean } = {}): CacheEntry[] {
  const stale = listCache(root).filter((e) => e.stale);
  if (!options.dryRun) {
    for (const e of stale) {
      fs.rmSync(e.path, { recursive: true, force: true });
      if (e.kind === 'q8') fs.rmSync(e.path.replace(/\.safetensors$/, '.json'), { force: true });
    }
  }
  return stale;
}
