// Decoding and the uint8 preprocessing (convert_to_rgb, resize, crop) of encoded images, paths and
// URLs on a small pool of worker threads, so that a large or hostile image (a 9400x9400 RLE BMP is
// 440 bytes) never holds the calling thread: a server's event loop keeps answering while images are
// prepared, and `altclip embed` / `index` prepare a batch's images side by side. Raw pixels are
// prepared on the calling thread (they are already decoded; moving them would be a copy).
//
// Each thread holds one image at a time, so the decoded pixels alive in the pool are at most
// `threads` images (each within the decoder's pixel limit). Thread count: ALTCLIP_DECODE_THREADS
// (0: everything on the calling thread), default min(4, cores); setDecodeThreads() for tests.
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import { loadImage, type ImageDecodeOptions } from './decode.js';
import type { ImageProcessorConfig } from './processor.js';
import { resizeAndCrop } from './transform.js';
import type { ImageInput, RawImage } from './types.js';

export interface PrepareJob {
  id: number;
  /** Encoded bytes (moved to the thread), or a path / URL string. */
  input: Uint8Array | string;
  cfg: ImageProcessorConfig;
  decode: ImageDecodeOptions;
  keepGray: boolean;
}

export type PrepareReply =
  | { id: number; image: RawImage; decodedPixels: number }
  | { id: number; error: string; stage: 'decode' | 'transform'; decodedPixels: number };

/**
 * A thread that has decoded an image this large is ended and replaced (when next needed): its freed
 * pixel buffers go at once, not whenever its garbage collector gets to them, so what the pool holds
 * stays at about one image per thread (an idle thread does not collect).
 */
const RECYCLE_PIXELS = 16 * 2 ** 20;

/** Failed after decoding (resize / crop): the caller names the input. */
export class TransformError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransformError';
  }
}

interface Task {
  job: Omit<PrepareJob, 'id'>;
  resolve(image: RawImage): void;
  reject(err: Error): void;
}

interface Slot {
  worker: Worker;
  task: { id: number; task: Task } | null;
}

const WORKER_MODULE = new URL(`./prepare_worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url).href;

let liveThreads = 0;
/** Preparing threads started and not yet ended (diagnostics; the tests watch it). */
export const prepareThreadCount = (): number => liveThreads;

export class PreparePool {
  private readonly slots: Slot[] = [];
  private readonly queue: Task[] = [];
  private nextId = 0;
  private closed = false;

  /** `module`: what each thread runs (prepare_worker; tests give others). */
  constructor(
    readonly threads: number,
    private readonly module: string = WORKER_MODULE,
  ) {
    if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${threads}`);
  }

  /** Decoded, converted, resized and cropped pixels of one encoded image, path or URL. */
  prepare(job: Omit<PrepareJob, 'id'>): Promise<RawImage> {
    if (this.closed) return Promise.reject(new Error('the image decoding pool is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      this.pump();
    });
  }

  /** Ends the threads once their current images are done; queued images still run first. */
  close(): void {
    this.closed = true;
    this.pump();
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => s.task === null);
      if (!slot && this.slots.length < this.threads) slot = this.spawn();
      if (!slot) return;
      const task = this.queue.shift()!;
      const id = this.nextId++;
      slot.task = { id, task };
      slot.worker.ref(); // a job in flight keeps the process alive (an idle thread does not)
      let input = task.job.input;
      const transfer: ArrayBuffer[] = [];
      if (typeof input !== 'string') {
        // a copy in its own buffer, moved (Buffer#slice would be a view, and moving it would empty the caller's)
        input = new Uint8Array(input);
        transfer.push(input.buffer as ArrayBuffer);
      }
      slot.worker.postMessage({ ...task.job, input, id } satisfies PrepareJob, transfer);
    }
    if (this.closed) for (const s of this.slots.filter((s) => s.task === null)) void s.worker.terminate();
  }

  private spawn(): Slot {
    const worker = new Worker(new URL('./prepare_thread.mjs', import.meta.url), { workerData: { module: this.module }, execArgv: [] });
    const slot: Slot = { worker, task: null };
    liveThreads++;
    worker.once('exit', () => liveThreads--);
    this.slots.push(slot);
    worker.unref();
    const retire = () => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      return i >= 0;
    };
    worker.on('message', (m: PrepareReply) => {
      if (slot.task?.id !== m.id) return;
      const { task } = slot.task;
      slot.task = null;
      worker.unref();
      if (m.decodedPixels >= RECYCLE_PIXELS && retire()) void worker.terminate();
      if ('image' in m) task.resolve(m.image);
      else task.reject(m.stage === 'transform' ? new TransformError(m.error) : new Error(m.error));
      this.pump();
    });
    const lost = (why: string) => {
      if (!retire()) return;
      slot.task?.task.reject(new Error(`the image decoding thread stopped: ${why}`));
      slot.task = null;
      this.pump(); // a new thread takes the queue
    };
    worker.on('error', (e) => lost(e.message));
    worker.on('exit', (code) => lost(`exit code ${code}`));
    return slot;
  }
}

const envThreads = (): number | undefined => {
  const v = process.env.ALTCLIP_DECODE_THREADS;
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`ALTCLIP_DECODE_THREADS must be a whole number >= 0, got ${JSON.stringify(v)}`);
  return n;
};

let threads: number | undefined;
let pool: PreparePool | null = null;

/** Threads that prepare images (0: the calling thread does); replaces the current pool. */
export function setDecodeThreads(n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`decode threads must be a whole number >= 0, got ${n}`);
  threads = n;
  pool?.close();
  pool = null;
}

/** Current thread count (see setDecodeThreads). */
export function decodeThreads(): number {
  // no threads in the browser build (its images arrive decoded, as raw pixels)
  const node = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
  threads ??= node ? (envThreads() ?? Math.min(4, os.availableParallelism())) : 0;
  return threads;
}

/**
 * decode -> convert_to_rgb -> resize -> crop of one input, on the pool for encoded bytes, paths and
 * URLs, here for raw pixels (or with 0 threads). A failure after decoding is a TransformError.
 */
export async function prepareImage(input: ImageInput, cfg: ImageProcessorConfig, decode: ImageDecodeOptions, keepGray: boolean): Promise<RawImage> {
  const raw = typeof input === 'object' && !(input instanceof Uint8Array) && !(input instanceof URL);
  if (raw || decodeThreads() === 0) {
    const decoded = await loadImage(input, cfg.doConvertRgb ? { ...decode, dropAlpha: true } : decode);
    try {
      return resizeAndCrop(decoded, cfg, keepGray);
    } catch (e) {
      throw new TransformError((e as Error).message);
    }
  }
  pool ??= new PreparePool(decodeThreads());
  return pool.prepare({ input: input instanceof URL ? input.href : input, cfg, decode, keepGray });
}
