// What the routes ask of the model, through one dynamic batcher per modality (texts and images run on
// separate sessions, so a text batch never waits for an image batch). The numbers are the tasks':
// embeddings are embed*Batches' normalised rows (text_embeds / image_embeds), classification is
// zeroShotImageClassification's scoring (labels in the hypothesis template, logit_scale * cosine,
// softmax), similarity the cosines of imageTextSimilarity.
import { matmulTransposed, stackRows } from '../math.js';
import { logitScale } from '../tasks/similarity.js';
import type { AltCLIPParts } from '../tasks/types.js';
import { type LabelScore, fillTemplate, scoreLabels } from '../tasks/zero-shot.js';
import { type BatcherHooks, type BatcherOptions, DynamicBatcher, InputError } from './batcher.js';
import { ApiError } from './errors.js';
import { embedImageBatches, embedTextBatches } from '../tasks/index.js';
import { DEFAULT_MAX_PIXELS } from '../image/index.js';
import type { PixelBudget } from './budget.js';

export type Modality = 'text' | 'image';
/** How errors name a request's inputs: a list's name ("input" -> "input[2]"), or a function of the index. */
export type Naming = string | ((index: number) => string);

export const DEFAULT_BATCHING: BatcherOptions = { maxBatchSize: 16, maxWaitMs: 5, maxQueue: 512, concurrency: 2 };

export class EmbeddingService {
  readonly texts: DynamicBatcher<string>;
  readonly images: DynamicBatcher<Uint8Array>;
  private readonly tokenizer?: { encode(text: string): number[] };

  constructor(
    readonly clip: AltCLIPParts,
    batching: BatcherOptions,
    hooks: (modality: Modality) => BatcherHooks = () => ({}),
    /** Decoded pixels in flight (budget.ts): image requests borrow their pixels before they are queued. */
    readonly budget?: PixelBudget,
  ) {
    const batchSize = batching.maxBatchSize;
    this.texts = new DynamicBatcher((inputs, onError) => embedTextBatches(clip, inputs, { batchSize, onError }), batching, hooks('text'));
    this.images = new DynamicBatcher((inputs, onError) => embedImageBatches(clip, inputs, { batchSize, onError }), batching, hooks('image'));
    this.tokenizer = (clip.processor as { tokenizer?: { encode(text: string): number[] } }).tokenizer;
  }

  /** Normalised text embeddings, one per text. `what` names the inputs in errors: "input" -> input[i]. */
  embedTexts(texts: string[], what: Naming = 'input'): Promise<Float32Array[]> {
    return settle(this.texts.submit(texts), what);
  }

  /**
   * Normalised image embeddings of encoded images; an undecodable one is a 400 naming `what[i]`. With a
   * budget, the request first waits for its images' pixels (413 when they exceed the whole budget).
   */
  async embedImages(images: Uint8Array[], what: Naming = 'input'): Promise<Float32Array[]> {
    const release = this.budget ? await this.budget.acquireImages(images, this.maxPixels()) : () => {};
    try {
      return await settle(this.images.submit(images), what);
    } finally {
      release();
    }
  }

  /** The decoder's per-image pixel limit of this model's processor (images over it are refused unread). */
  private maxPixels(): number {
    const p = this.clip.processor as { imageProcessor?: { decodeOptions?: { maxPixels?: number } } };
    return p.imageProcessor?.decodeOptions?.maxPixels ?? DEFAULT_MAX_PIXELS;
  }

  /** Tokens of the texts with the special tokens (what the model reads, before truncation to 512). */
  countTokens(texts: string[]): number {
    return this.tokenizer ? texts.reduce((n, t) => n + this.tokenizer!.encode(t).length, 0) : 0;
  }

  /** The labels of one image with their probabilities, best first (zeroShotImageClassification's numbers). */
  async classify(image: Uint8Array, labels: string[], template: string): Promise<LabelScore[]> {
    // Both submitted before either is awaited: the image and the label texts run at the same time.
    const texts = this.embedTexts(labels.map((l) => fillTemplate(template, l)), 'labels');
    texts.catch(() => {}); // awaited below; the image may be refused (queue full) before that
    const rows = this.embedImages([image], () => 'image');
    const [labelRows, imageRows] = await Promise.all([texts, rows]);
    return scoreLabels(stackRows(imageRows), stackRows(labelRows), labels, await logitScale(this.clip))[0]!;
  }

  /** Cosine similarities [images][texts]. */
  async similarity(images: Uint8Array[], texts: string[]): Promise<number[][]> {
    const t = this.embedTexts(texts, 'texts');
    t.catch(() => {}); // awaited below
    const i = this.embedImages(images, 'images');
    const [textRows, imageRows] = await Promise.all([t, i]);
    return matmulTransposed(stackRows(imageRows), stackRows(textRows));
  }

  /** Partial batches run at once from now on (the server is draining); inputs are still taken. */
  flush(): void {
    this.texts.flush();
    this.images.flush();
  }

  /** Stops taking inputs; resolves when every queued and running batch is done. */
  async close(): Promise<void> {
    await this.budget?.idle(); // requests waiting for pixels were received before the stop: they run
    await Promise.all([this.texts.close(), this.images.close()]);
  }
}

/** All rows of a request, or the first failed input as a 400 naming it (`what[i]`). */
async function settle(promises: Promise<Float32Array>[], what: Naming): Promise<Float32Array[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    const err = failed.reason as Error;
    if (err instanceof InputError) {
      // The library names the input by its place in the merged batch; name it by its place in the request.
      const reason = err.message.replace(/^(?:(?:image \d+ \([^)]*\)|<[^>]*>):\s*)+/, '');
      const name = typeof what === 'function' ? what(err.input) : `${what}[${err.input}]`;
      throw new ApiError(400, `${name}: cannot use the image: ${reason}`);
    }
    throw err;
  }
  return results.map((r) => (r as PromiseFulfilledResult<Float32Array>).value);
}
