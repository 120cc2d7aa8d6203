// onnxruntime sessions, on the calling thread or in a worker thread of their own (session_thread.mjs).
// Which graph file a session loads, and the cache it lives in: graph_cache.ts.
import './ort_env.mjs'; // before onnxruntime-node: see there
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

export interface SessionOptions {
  /** Intra-op threads (default: the number of cores; more than 4 per core is refused). */
  threads?: number;
  /**
   * Where built graphs and q8 weights go (default: $ALTCLIP_CACHE, else $XDG_CACHE_HOME/altclip, else
   * ~/.cache/altclip). Where it cannot be written (or cannot hold hard links to the weights): a
   * per-user folder in the OS temp folder, else no cache (weights handed over in memory); a warning
   * says so once. Never the model's own folder. See graph_cache.ts and the README's "Cache" section.
   */
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

let liveThreads = 0;
/** Session threads started and not yet ended (diagnostics; the tests watch it). */
export const sessionThreadCount = (): number => liveThreads;

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
    liveThreads++;
    this.worker.once('exit', () => liveThreads--);
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
export async function openSession(label: string, model: string | Uint8Array, opts: ort.InferenceSession.SessionOptions,
  options: SessionOptions): Promise<Session> {
  if (options.workerThreads === false) {
    return new LocalSession(typeof model === 'string' ? await ort.InferenceSession.create(model, opts) : await ort.InferenceSession.create(model, opts));
  }
  return ThreadSession.create(label, model, opts);
}

/** Threads per session above this many per core are refused (each session starts `threads` threads). */
const MAX_THREADS_PER_CORE = 4;

/** SessionOptions checked: a clear error for values onnxruntime would take and regret. */
export function checkSessionOptions(options: SessionOptions): void {
  const { threads } = options;
  if (threads === undefined) return;
  const cores = os.availableParallelism();
  if (!Number.isSafeInteger(threads) || threads < 1) {
    throw new Error(`threads must be a positive integer, got ${JSON.stringify(threads)}`);
  }
  if (threads > MAX_THREADS_PER_CORE * cores) {
    throw new Error(`threads: ${threads} is far above this machine's ${cores} cores (at most ${MAX_THREADS_PER_CORE * cores}: `
      + 'every session starts that many threads, and more threads than cores only slow it down)');
  }
}

export function sessionOptions(options: SessionOptions): ort.InferenceSession.SessionOptions {
  checkSessionOptions(options);
  return {
    intraOpNumThreads: options.threads ?? os.availableParallelism(),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    executionProviders: options.executionProviders ?? ['cpu'],
  };
}
