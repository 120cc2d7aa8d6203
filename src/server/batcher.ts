// Dynamic batching, as Infinity's BatchHandler (libs/infinity_emb/infinity_emb/inference/batch_handler.py):
// requests put their inputs on a queue; a loop takes up to `maxBatchSize` queued inputs, from any number
// of requests, once the batch is full or the oldest input has waited `maxWaitMs`, and runs them as one
// model batch. The queue is bounded: a request whose inputs do not fit is refused as a whole
// (QueueFullError -> 429 + Retry-After), nothing of it is queued. An input that fails (an undecodable
// image) rejects only its own promise: the tasks' `onError` reports it and the rest of the merged
// batch is embedded as usual.
import type { EmbeddingBatch, InputFailure } from '../tasks/index.js';

export interface BatcherOptions {
  /** Inputs per model batch (1 = no merging: every input is its own model call). */
  maxBatchSize: number;
  /** How long the oldest queued input may wait for more inputs before a partial batch runs. */
  maxWaitMs: number;
  /** Inputs that may wait (not yet running); more are refused. */
  maxQueue: number;
  /** Batches running at the same time (2: one is decoded/preprocessed while the other's model runs). */
  concurrency: number;
}

/** Runs one merged batch: the tasks' embed*Batches with onError (one yielded batch per model call). */
export type RunBatch<I> = (inputs: I[], onError: (failure: InputFailure) => void) => AsyncIterable<EmbeddingBatch>;

export interface BatcherHooks {
  /** A model batch finished: its size (inputs) and wall time from the first input taken to the last row. */
  batch?(size: number, seconds: number): void;
  /** The number of inputs waiting changed. */
  queue?(depth: number): void;
  /** A request's inputs were refused (QueueFullError). */
  rejected?(wanted: number): void;
}

/** The queue cannot take a request's inputs now. */
export class QueueFullError extends Error {
  constructor(readonly retryAfterSeconds: number, depth: number, wanted: number) {
    super(`server busy: ${depth} inputs are queued and ${wanted} more do not fit; retry after ${retryAfterSeconds} s`);
    this.name = 'QueueFullError';
  }
}

/** One input could not be used (undecodable image ...); only its request fails. */
export class InputError extends Error {
  constructor(message: string, readonly input: number) {
    super(message);
    this.name = 'InputError';
  }
}

/** The batcher was closed: no new inputs. */
export class ClosedError extends Error {
  constructor() {
    super('the server is shutting down');
    this.name = 'ClosedError';
  }
}

interface Job<I> {
  input: I;
  /** Position of the input in its request (for error messages). */
  index: number;
  enqueuedAt: number;
  resolve(row: Float32Array): void;
  reject(err: Error): void;
}

export class DynamicBatcher<I> {
  private readonly queue: Job<I>[] = [];
  private running = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private flushing = false;
  private idleWaiters: (() => void)[] = [];
  /** Recent seconds per input (exponential average), for Retry-After. */
  private secondsPerInput = 0;

  constructor(
    private readonly run: RunBatch<I>,
    readonly options: BatcherOptions,
    private readonly hooks: BatcherHooks = {},
  ) {
    const { maxBatchSize, maxWaitMs, maxQueue, concurrency } = options;
    if (!Number.isInteger(maxBatchSize) || maxBatchSize < 1) throw new RangeError(`maxBatchSize must be a positive integer, got ${maxBatchSize}`);
    if (!(maxWaitMs >= 0) || !Number.isFinite(maxWaitMs)) throw new RangeError(`maxWaitMs must be >= 0, got ${maxWaitMs}`);
    if (!Number.isInteger(maxQueue) || maxQueue < 1) throw new RangeError(`maxQueue must be a positive integer, got ${maxQueue}`);
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
  }

  /** Inputs waiting for a batch. */
  get depth(): number {
    return this.queue.length;
  }

  /**
   * Queues all of `inputs` (or none: QueueFullError / ClosedError thrown synchronously) and returns one
   * promise per input: its embedding row, or an InputError for that input.
   */
  submit(inputs: I[]): Promise<Float32Array>[] {
    if (this.closed) throw new ClosedError();
    if (this.queue.length + inputs.length > this.options.maxQueue) {
      this.hooks.rejected?.(inputs.length);
      throw new QueueFullError(this.retryAfter(), this.queue.length, inputs.length);
    }
    const now = performance.now();
    const promises = inputs.map(
      (input, index) => new Promise<Float32Array>((resolve, reject) => this.queue.push({ input, index, enqueuedAt: now, resolve, reject })),
    );
    this.hooks.queue?.(this.queue.length);
    this.schedule();
    return promises;
  }

  /** From now on partial batches run at once (a server draining); inputs are still taken. */
  flush(): void {
    this.flushing = true;
    this.schedule();
  }

  /** Refuses new inputs; resolves once everything queued or running has finished. */
  close(): Promise<void> {
    this.closed = true;
    this.schedule(); // what waits for a fuller batch runs now
    return this.idle();
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Seconds until the queue has likely drained: queued inputs x recent seconds per input, at least 1. */
  private retryAfter(): number {
    return Math.max(1, Math.ceil((this.queue.length * this.secondsPerInput) / this.options.concurrency));
  }

  private schedule(): void {
    while (this.running < this.options.concurrency && this.queue.length > 0) {
      const waited = performance.now() - this.queue[0]!.enqueuedAt;
      if (!this.closed && !this.flushing && this.queue.length < this.options.maxBatchSize && waited < this.options.maxWaitMs) {
        // A partial batch: wait for more inputs, at most until the oldest has waited maxWaitMs.
        if (!this.timer) {
          this.timer = setTimeout(() => {
            this.timer = null;
            this.schedule();
          }, this.options.maxWaitMs - waited);
        }
        return;
      }
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = null;
      }
      const jobs = this.queue.splice(0, this.options.maxBatchSize);
      this.hooks.queue?.(this.queue.length);
      this.running++;
      void this.runBatch(jobs).finally(() => {
        this.running--;
        this.schedule();
        if (this.queue.length === 0 && this.running === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      });
    }
  }

  private async runBatch(jobs: Job<I>[]): Promise<void> {
    const settled = new Array<boolean>(jobs.length).fill(false);
    const start = performance.now();
    try {
      const onError = (f: InputFailure) => {
        const job = jobs[f.index];
        if (!job || settled[f.index]) return;
        settled[f.index] = true;
        job.reject(new InputError(f.error.message, job.index));
      };
      for await (const { indices, embeddings } of this.run(jobs.map((j) => j.input), onError)) {
        indices.forEach((i, n) => {
          if (settled[i]) return;
          settled[i] = true;
          jobs[i]!.resolve(embeddings[n]!);
        });
      }
      const seconds = (performance.now() - start) / 1000;
      this.secondsPerInput = this.secondsPerInput === 0 ? seconds / jobs.length : 0.8 * this.secondsPerInput + (0.2 * seconds) / jobs.length;
      this.hooks.batch?.(jobs.length, seconds);
      jobs.forEach((job, i) => {
        if (!settled[i]) job.reject(new Error(`the model returned no embedding for input ${job.index}`));
      });
    } catch (err) {
      // The model run itself failed: every input of the batch not yet answered gets the error.
      const error = err instanceof Error ? err : new Error(String(err));
      jobs.forEach((job, i) => {
        if (!settled[i]) job.reject(error);
      });
    }
  }
}
