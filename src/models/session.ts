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
import { Worker } from 'node:worker_threads';
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
   * skip repacking them (full-size fp32 warm load on 2 cores: ~2 s -> ~0.8-1 s). Costs about the weights' size
   * again on disk, in the graph cache; the cache is specific to this CPU and onnxruntime version.
   */
  cachePrepacked?: boolean;
  /**
   * Run each onnxruntime session in a worker thread of its own (default true): the towers load at
   * the same time (full-size fp32 warm load ~3 s -> ~2 s on 2 cores) and inference does not block
   * the event loop. false: on the calling thread, as onnxruntime-node does.
   */
  workerThreads?: boolean;
}

/** What the models need of an onnxruntime session, wherever it runs. */
export interface Session {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, ort.Tensor>, fetch: readonly string[]): Promise<Record<string, ort.Tensor>>;
  release(): Promise<void>;
}

/** A session on the calling thread. */
class LocalSession implements Session {
  constructor(private readonly session: ort.InferenceSession) {}
  get inputNames() { return this.session.inputNames; }
  get outputNames() { return this.session.outputNames; }
  async run(feeds: Record<string, ort.Tensor>, fetch: readonly string[]): Promise<Record<string, ort.Tensor>> {
    return (await this.session.run(feeds, [...fetch])) as Record<string, ort.Tensor>;
  }
  release(): Promise<void> { return this.session.release(); }
}

interface WireTensor { type: ort.Tensor.Type; dims: readonly number[]; data: ort.Tensor.DataType }
type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

/**
 * The worker thread that owns one session (session_thread.mjs), and its requests in flight. The
 * thread does not keep the process alive while it is idle. Its listeners reference only this
 * object, never the ThreadSession, so that a session nobody references can be collected.
 */
class SessionThread {
  // plain JavaScript: no need for the loaders this process may run under (tsx's costs ~150 ms a thread)
  readonly worker = new Worker(new URL('./session_thread.mjs', import.meta.url), { execArgv: [] });
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private stopped?: Error;

  constructor(label: string) {
    this.worker.unref();
    this.worker.on('message', (m: { id: number; result?: unknown; error?: { message: string; stack?: string } }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.settled(m.id);
      if (m.error) {
        const e = new Error(m.error.message);
        if (m.error.stack) e.stack = m.error.stack;
        p.reject(e);
      } else {
        p.resolve(m.result);
      }
    });
    const stop = (why: string) => {
      this.stopped ??= new Error(`altclip: the thread running ${label} stopped (${why})`);
      for (const [id, p] of this.pending) { this.settled(id); p.reject(this.stopped); }
    };
    this.worker.on('error', (e) => stop(e.message));
    this.worker.on('exit', (code) => stop(`exit code ${code}`));
  }

  request(msg: Record<string, unknown>): Promise<unknown> {
    if (this.stopped) return Promise.reject(this.stopped);
    const id = this.nextId++;
    if (this.pending.size === 0) this.worker.ref(); // keep the process alive until the answer comes
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...msg, id });
    });
  }

  private settled(id: number): void {
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
  }
}

/** Ends the thread of a session that was dropped without release() (its memory goes with it). */
const orphans = new FinalizationRegistry<Worker>((worker) => void worker.terminate());

/** A session run by a SessionThread. Inputs are copied to the thread, outputs transferred back. */
class ThreadSession implements Session {
  private constructor(private readonly thread: SessionThread, readonly inputNames: readonly string[],
    readonly outputNames: readonly string[]) {
    orphans.register(this, thread.worker, this);
  }

  static async create(label: string, model: string | Uint8Array, options: ort.InferenceSession.SessionOptions): Promise<ThreadSession> {
    const thread = new SessionThread(label);
    try {
      const names = await thread.request({ op: 'create', model, options }) as { inputNames: string[]; outputNames: string[] };
      return new ThreadSession(thread, names.inputNames, names.outputNames);
    } catch (e) {
      await thread.worker.terminate();
      throw e;
    }
  }

  async run(feeds: Record<string, ort.Tensor>, fetch: readonly string[]): Promise<Record<string, ort.Tensor>> {
    const wire: Record<string, WireTensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      let data = t.data as ort.Tensor.DataType;
      // a view into a larger buffer is cut out, so that only its own bytes are copied across
      if (ArrayBuffer.isView(data) && data.byteLength !== data.buffer.byteLength) data = data.slice() as typeof data;
      wire[name] = { type: t.type, dims: t.dims, data };
    }
    const out = await this.thread.request({ op: 'run', feeds: wire, fetch }) as Record<string, WireTensor>;
    return Object.fromEntries(Object.entries(out).map(([name, t]) => [name, new ort.Tensor(t.type as 'float32', t.data as Float32Array, t.dims)]));
  }

  async release(): Promise<void> {
    orphans.unregister(this);
    try {
      await this.thread.request({ op: 'release' });
    } finally {
      await this.thread.worker.terminate();
    }
  }
}

/** An onnxruntime session for `model` (a path or the graph's bytes), on its own thread unless told otherwise. */
async function openSession(label: string, model: string | Uint8Array, opts: ort.InferenceSession.SessionOptions,
  options: SessionOptions): Promise<Session> {
  if (options.workerThreads === false) {
    return new LocalSession(typeof model === 'string' ? await ort.InferenceSession.create(model, opts) : await ort.InferenceSession.create(model, opts));
  }
  return ThreadSession.create(label, model, opts);
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

/** Writes the graph file unless it already holds exactly `bytes` (a damaged cached copy is replaced). */
function writeUnlessSame(file: string, bytes: Uint8Array): void {
  let current: Buffer | undefined;
  try {
    current = fs.readFileSync(file);
  } catch { /* not there yet */ }
  if (!current || !current.equals(bytes)) writeFileAtomic(file, bytes);
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
async function prepackedSession(label: string, dir: string, model: string, opts: ort.InferenceSession.SessionOptions,
  options: SessionOptions): Promise<Session> {
  const packed = path.join(dir, `prepacked-${machineTag()}`);
  const optimized = path.join(packed, 'model.onnx');
  if (fs.existsSync(optimized)) {
    try {
      return await openSession(label, optimized, { ...opts, graphOptimizationLevel: 'disabled' }, options);
    } catch (e) {
      // a damaged copy (onnxruntime refuses it): made again below
      process.emitWarning(`altclip: rebuilding ${packed}: ${(e as Error).message}`);
      fs.rmSync(packed, { recursive: true, force: true });
    }
  }
  const tmp = `${packed}.${process.pid}.${Date.now()}.tmp`;
  fs.mkdirSync(tmp, { recursive: true });
  try {
    const session = await openSession(label, model, {
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
export async function createSession(g: GraphBuilder, options: SessionOptions): Promise<Session> {
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
      writeUnlessSame(model, bytes);
      if (options.cachePrepacked) return await prepackedSession(g.name, dir, model, opts, options);
      return await openSession(g.name, model, opts, options);
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
      writeUnlessSame(model, local);
      return await openSession(g.name, model, opts, options);
    } catch (e) {
      if (!(e as NodeJS.ErrnoException).code) throw e;
    }
  }

  process.emitWarning(`altclip: cannot write a graph next to the weights or link them into ${dir}; `
    + 'loading the weights into memory instead (uses more memory)');
  const externalData = files.map((f) => ({ path: names.get(f)!, data: fs.readFileSync(f) }));
  return openSession(g.name, bytes, { ...opts, externalData }, options);
}
