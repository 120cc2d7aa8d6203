// From a built graph to an onnxruntime session, with the weights read straight from the checkpoint.
//
// ONNX external data must resolve inside the .onnx file's folder (absolute paths, "../" and symlinks
// that leave the folder are refused), so each graph goes into a cache folder together with a hard
// link to every weight file it references: no copy, and a read-only checkpoint folder (or the HF
// cache, whose snapshot files are symlinks) works. Files are written atomically and reused.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';

import type { GraphBuilder } from '../onnx/graph.js';

export interface SessionOptions {
  /** Intra-op threads (default: the number of cores). */
  threads?: number;
  /** Where built graphs go (default: $ALTCLIP_CACHE, else $XDG_CACHE_HOME/altclip, else ~/.cache/altclip). */
  graphCacheDir?: string;
  /** onnxruntime execution providers, in order of preference (default ["cpu"]; "cuda" needs the GPU build). */
  executionProviders?: string[];
  /**
   * Also cache onnxruntime's optimized graph with its prepacked GEMM weights, so that later loads
   * skip repacking them (full-size fp32 warm load: ~3.5 s -> ~1.3 s). Costs about the weights' size
   * again on disk, in the graph cache; the cache is specific to this CPU and onnxruntime version.
   */
  cachePrepacked?: boolean;
}

const OPSETS = { '': 17, 'com.microsoft': 1 };

export function defaultGraphCacheDir(): string {
  if (process.env.ALTCLIP_CACHE) return process.env.ALTCLIP_CACHE;
  const xdg = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(xdg, 'altclip');
}

export function sessionOptions(options: SessionOptions): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: options.threads ?? os.availableParallelism(),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    executionProviders: options.executionProviders ?? ['cpu'],
  };
}

/** Writes `data` to `file` through a temporary file and a rename, so no reader sees half a file. */
export function writeFileAtomic(file: string, data: Uint8Array | string): void {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** Hard-links `target` as `link` (atomically replacing a stale link); false where the OS refuses. */
function hardLink(target: string, link: string): boolean {
  try {
    const a = fs.statSync(target);
    const b = fs.statSync(link, { throwIfNoEntry: false });
    if (b && a.ino === b.ino && a.dev === b.dev) return true;
    const tmp = `${link}.${process.pid}.${Date.now()}.tmp`;
    fs.linkSync(target, tmp);
    fs.renameSync(tmp, link);
    return true;
  } catch {
    return false;
  }
}

function fileIdentity(file: string): string {
  const s = fs.statSync(file);
  return `${file}:${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;
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
 * whole (built under a temporary name, then renamed) and loaded directly afterwards.
 */
async function prepackedSession(dir: string, model: string, opts: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
  const packed = path.join(dir, `prepacked-${machineTag()}`);
  const optimized = path.join(packed, 'model.onnx');
  if (fs.existsSync(optimized)) {
    return ort.InferenceSession.create(optimized, { ...opts, graphOptimizationLevel: 'disabled' });
  }
  const tmp = `${packed}.${process.pid}.${Date.now()}.tmp`;
  fs.mkdirSync(tmp, { recursive: true });
  try {
    const session = await ort.InferenceSession.create(model, {
      ...opts,
      optimizedModelFilePath: path.join(tmp, 'model.onnx'),
      extra: {
        session: {
          save_external_prepacked_constant_initializers: '1',
          optimized_model_external_initializers_file_name: 'model.data',
          optimized_model_external_initializers_min_size_in_bytes: '1024',
        },
      },
    });
    try {
      fs.renameSync(tmp, packed);
    } catch {
      // another process got there first: its copy is as good
    }
    return session;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * An onnxruntime session for the graph in `g`. Falls back, in order, to writing the graph beside
 * the weights (when linking is impossible, e.g. across file systems) and to handing onnxruntime the
 * weights in memory (a copy: a warning says so).
 */
export async function createSession(g: GraphBuilder, options: SessionOptions): Promise<ort.InferenceSession> {
  const files = g.referencedFiles();
  const names = new Map(files.map((f, i) => [f, `weights-${i}${path.extname(f)}`]));
  const bytes = g.encode((f) => names.get(f)!, OPSETS);
  const key = createHash('sha256').update(bytes).update(files.map(fileIdentity).join('\n')).digest('hex').slice(0, 24);
  const opts = sessionOptions(options);

  const dir = path.join(options.graphCacheDir ?? defaultGraphCacheDir(), 'graphs', `${g.name}-${key}`);
  try {
    fs.mkdirSync(dir, { recursive: true });
    if (files.every((f) => hardLink(f, path.join(dir, names.get(f)!)))) {
      const model = path.join(dir, 'model.onnx');
      if (!fs.existsSync(model)) writeFileAtomic(model, bytes);
      if (options.cachePrepacked) return await prepackedSession(dir, model, opts);
      return await ort.InferenceSession.create(model, opts);
    }
  } catch (e) {
    if (!(e as NodeJS.ErrnoException).code) throw e; // an onnxruntime error, not a file-system one
  }

  // Beside the weights: possible when they are all in one writable folder.
  const dirs = new Set(files.map((f) => path.dirname(f)));
  if (dirs.size === 1) {
    const weightsDir = [...dirs][0]!;
    const local = g.encode((f) => path.basename(f), OPSETS);
    const model = path.join(weightsDir, `.altclip-${g.name}-${key}.onnx`);
    try {
      if (!fs.existsSync(model)) writeFileAtomic(model, local);
      return await ort.InferenceSession.create(model, opts);
    } catch (e) {
      if (!(e as NodeJS.ErrnoException).code) throw e;
    }
  }

  process.emitWarning(`altclip: cannot write a graph next to the weights or link them into ${dir}; `
    + 'loading the weights into memory instead (uses more memory)');
  const externalData = files.map((f) => ({ path: names.get(f)!, data: fs.readFileSync(f) }));
  return ort.InferenceSession.create(bytes, { ...opts, externalData });
}
