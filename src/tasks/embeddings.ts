// Image and text embeddings: the projections of get_image_features / get_text_features, L2-normalised
// by default (= AltCLIPModel.forward's image_embeds / text_embeds). This is the one place inputs are
// batched and unreadable inputs are skipped or reported; every other task (and the CLI, the index,
// the server) builds on embedImageBatches / embedTextBatches.
import { setImmediate as nextMacrotask } from 'node:timers/promises';
import { Tensor } from '../tensor.js';
import { type Matrix, normalizeRows } from '../math.js';
import {
  type AltCLIPParts, type BatchOptions, DEFAULT_BATCH_SIZE, type EmbedOptions, type EmbeddingBatch, type ImageInput,
  type InputFailure,
} from './types.js';

/**
 * Embeddings of `images`, batch by batch, in input order. The next batch is decoded and preprocessed
 * (on the image pool's threads, src/image/pool.ts) while the model runs the current one (the sessions
 * run on their own threads).
 * An image that cannot be read goes to `options.onError` (no row for it) or, without onError, throws.
 */
export function embedImageBatches(clip: AltCLIPParts, images: ImageInput[], options: EmbedOptions = {}): AsyncGenerator<EmbeddingBatch> {
  if (!Array.isArray(images)) throw new TypeError('images must be an array (of paths, URLs, bytes or raw images)');
  return streamBatches(images, options, prepareImages(clip), (pixelValues) => clip.model.getImageFeatures({ pixelValues }));
}

/** Embeddings of `texts`, batch by batch, in input order; the next batch is tokenized during the model run. */
export function embedTextBatches(clip: AltCLIPParts, texts: string[], options: EmbedOptions = {}): AsyncGenerator<EmbeddingBatch> {
  if (!Array.isArray(texts)) throw new TypeError('texts must be an array of strings');
  for (const t of texts) if (typeof t !== 'string') throw new TypeError(`texts must be strings, got ${typeof t}`);
  return streamBatches(texts, options, prepareTexts(clip), (inputs) => clip.model.getTextFeatures(inputs));
}

/** Embeddings of `images`: a float32 Tensor [rows, projection_dim]; with onError, failed images have no row. */
export async function embedImages(clip: AltCLIPParts, images: ImageInput | ImageInput[], options: EmbedOptions = {}): Promise<Tensor> {
  return toTensor(await imageEmbeddingMatrix(clip, Array.isArray(images) ? images : [images], options));
}

/** Embeddings of `texts`: a float32 Tensor [texts, projection_dim] ([0, projection_dim] for none). */
export async function embedTexts(clip: AltCLIPParts, texts: string | string[], options: EmbedOptions = {}): Promise<Tensor> {
  return toTensor(await textEmbeddingMatrix(clip, typeof texts === 'string' ? [texts] : texts, options));
}

/** The rows of embedImageBatches in one matrix, and which input each row is. */
export async function imageEmbeddingMatrix(clip: AltCLIPParts, images: ImageInput[], options: EmbedOptions = {}): Promise<Matrix & { indices: number[] }> {
  return collect(clip, embedImageBatches(clip, images, options));
}

export async function textEmbeddingMatrix(clip: AltCLIPParts, texts: string[], options: EmbedOptions = {}): Promise<Matrix> {
  return collect(clip, embedTextBatches(clip, texts, options));
}

async function collect(clip: AltCLIPParts, batches: AsyncGenerator<EmbeddingBatch>): Promise<Matrix & { indices: number[] }> {
  const cols = clip.model.config.projectionDim;
  const indices: number[] = [];
  const rows: Float32Array[] = [];
  for await (const b of batches) {
    indices.push(...b.indices);
    rows.push(...b.embeddings);
  }
  const data = new Float32Array(rows.length * cols);
  rows.forEach((r, i) => data.set(r, i * cols));
  return { data, rows: rows.length, cols, indices };
}

export function toMatrix(t: Tensor): Matrix {
  if (t.dims.length !== 2) throw new Error(`expected a [batch, dim] tensor, got dims [${t.dims.join(', ')}]`);
  if (t.type !== 'float32') throw new Error(`expected a float32 tensor, got ${t.type}`);
  return { data: t.data as Float32Array, rows: t.dims[0]!, cols: t.dims[1]! };
}

export function toTensor(m: Matrix): Tensor {
  return new Tensor('float32', m.data, [m.rows, m.cols]);
}

// ---------------------------------------------------------------------------------------------

/** One batch made ready for the model: the inputs that survived and the model's feeds for them. */
interface Prepared<F> {
  indices: number[];
  feeds: F | null;
  failures: InputFailure[];
}

type Prepare<T, F> = (batch: T[], offset: number) => Promise<Prepared<F>>;

export function checkBatchSize(batchSize: number | undefined): number {
  const n = batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  return n;
}

/**
 * Batches of `items` through `prepare` (started from this thread) and `run` (the model's threads), pipelined: batch
 * b + 1 is prepared while batch b runs. Failures are reported (or thrown) when their batch comes up,
 * so they come in input order between the rows.
 */
async function* streamBatches<T, F>(
  items: T[],
  options: EmbedOptions,
  prepare: Prepare<T, F>,
  run: (feeds: F) => Promise<Tensor>,
): AsyncGenerator<EmbeddingBatch> {
  const batchSize = checkBatchSize(options.batchSize);
  const { signal, onError, onProgress } = options;
  const normalize = options.normalize ?? true;
  signal?.throwIfAborted();
  const prepareAt = (start: number): Promise<Prepared<F>> => {
    // After a macrotask: whatever the model call started synchronously (posting the batch to its
    // session thread) goes out before this thread is busy with the next batch.
    const p = nextMacrotask().then(() => prepare(items.slice(start, start + batchSize), start));
    p.catch(() => {}); // surfaced when its batch comes up
    return p;
  };
  let next = items.length > 0 ? prepareAt(0) : null;
  for (let start = 0; next; start += batchSize) {
    // An abort while the inputs are still being read (a slow URL) ends the wait too.
    const { indices, feeds, failures } = await untilAborted(next, signal);
    for (const f of failures) {
      if (!onError) throw f.error;
      onError(f);
    }
    signal?.throwIfAborted();
    const running = feeds === null ? null : run(feeds);
    running?.catch(() => {}); // awaited below, after the next batch is under way
    next = start + batchSize < items.length ? prepareAt(start + batchSize) : null;
    let batch: EmbeddingBatch | null = null;
    if (running) {
      const m = toMatrix(await running);
      if (m.rows !== indices.length) throw new Error(`the model returned ${m.rows} embeddings for ${indices.length} inputs`);
      const rows = normalize ? normalizeRows(m) : m;
      batch = { indices, embeddings: indices.map((_, k) => rows.data.subarray(k * rows.cols, (k + 1) * rows.cols)) };
    }
    onProgress?.(Math.min(start + batchSize, items.length), items.length);
    if (batch) yield batch;
  }
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function prepareImages(clip: AltCLIPParts): Prepare<ImageInput, Tensor> {
  return async (batch, offset) => {
    // One processor call per image (decoded side by side), so an unreadable image only loses itself.
    const results = await Promise.allSettled(batch.map((image) => clip.processor.process({ images: [image] })));
    const indices: number[] = [];
    const pixels: Tensor[] = [];
    const failures: InputFailure[] = [];
    results.forEach((r, k) => {
      const index = offset + k;
      if (r.status === 'fulfilled' && r.value.pixelValues) {
        indices.push(index);
        pixels.push(r.value.pixelValues);
      } else {
        failures.push(inputFailure(batch[k]!, index, r.status === 'rejected' ? r.reason : new Error('the processor returned no pixel values')));
      }
    });
    return { indices, feeds: pixels.length > 0 ? concatRows(pixels) : null, failures };
  };
}

function prepareTexts(clip: AltCLIPParts): Prepare<string, { inputIds: Tensor; attentionMask?: Tensor }> {
  return async (batch, offset) => {
    // Padding to the longest text of the batch, as transformers' pipelines do (padding=True); pads are
    // masked, so the result does not depend on the batch. Truncation only affects texts over 512 tokens.
    const { inputIds, attentionMask } = await clip.processor.process({ text: batch, padding: true, truncation: true });
    if (!inputIds) throw new Error('the processor returned no input ids');
    return { indices: batch.map((_, k) => offset + k), feeds: { inputIds, attentionMask }, failures: [] };
  };
}

/** How an input is named in messages: its path or URL, else its position. */
export function displayInput(input: ImageInput, index: number): string {
  if (typeof input === 'string') return input;
  if (input instanceof URL) return input.href;
  return `<input #${index}>`;
}

function inputFailure(input: ImageInput, index: number, reason: unknown): InputFailure {
  const name = displayInput(input, index);
  // The processor saw the image alone, so it calls bytes / pixels "image 0": name the real position.
  const message = (reason instanceof Error ? reason.message : String(reason)).replace(/^image 0 \((encoded bytes|raw pixels)\): /, '');
  const error = new Error(message.includes(name) ? message : `${name}: ${message}`, { cause: reason });
  return { index, input: name, error };
}

/** Tensors [1, ...] (or [n, ...]) of one shape and type stacked along dim 0. */
function concatRows(parts: Tensor[]): Tensor {
  const first = parts[0]!;
  if (parts.length === 1) return first;
  const tail = first.dims.slice(1);
  type Data = Float32Array | BigInt64Array;
  const Data = first.data.constructor as new (length: number) => Data;
  const data = new Data(parts.reduce((n, p) => n + p.data.length, 0));
  let offset = 0;
  for (const p of parts) {
    if (p.dims.slice(1).join() !== tail.join()) {
      throw new Error(`images of one batch were preprocessed to different sizes ([${p.dims.join(', ')}] vs [${first.dims.join(', ')}])`);
    }
    (data as Float32Array).set(p.data as Float32Array, offset);
    offset += p.data.length;
  }
  return new Tensor(first.type as 'float32', data as Float32Array, [parts.reduce((n, p) => n + p.dims[0]!, 0), ...tail]);
}

export type { BatchOptions, EmbedOptions, EmbeddingBatch };
