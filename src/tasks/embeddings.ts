// Image and text embeddings in batches: the projections of get_image_features / get_text_features,
// L2-normalised by default (= AltCLIPModel.forward's image_embeds / text_embeds).
import { Tensor } from '../tensor.js';
import { type Matrix, normalizeRows } from '../math.js';
import { type AltCLIPParts, type BatchOptions, DEFAULT_BATCH_SIZE, type ImageInput } from './types.js';

export interface EmbedOptions extends BatchOptions {
  /** L2-normalise each embedding (default true), as forward() does for image_embeds/text_embeds. */
  normalize?: boolean;
}

/** Embeddings of `images`: a float32 Tensor [images, projection_dim]. */
export async function embedImages(
  clip: AltCLIPParts,
  images: ImageInput | ImageInput[],
  options: EmbedOptions = {},
): Promise<Tensor> {
  const list = Array.isArray(images) ? images : [images];
  return toTensor(await embedImageMatrix(clip, list, options));
}

/** Embeddings of `texts`: a float32 Tensor [texts, projection_dim]. */
export async function embedTexts(clip: AltCLIPParts, texts: string | string[], options: EmbedOptions = {}): Promise<Tensor> {
  const list = typeof texts === 'string' ? [texts] : texts;
  return toTensor(await embedTextMatrix(clip, list, options));
}

export function embedImageMatrix(clip: AltCLIPParts, images: ImageInput[], options: EmbedOptions = {}): Promise<Matrix> {
  return inBatches(images, options, async (batch) => {
    const { pixelValues } = await clip.processor.process({ images: batch });
    if (!pixelValues) throw new Error('the processor returned no pixel values');
    return clip.model.getImageFeatures({ pixelValues });
  });
}

export function embedTextMatrix(clip: AltCLIPParts, texts: string[], options: EmbedOptions = {}): Promise<Matrix> {
  for (const t of texts) if (typeof t !== 'string') throw new TypeError(`texts must be strings, got ${typeof t}`);
  return inBatches(texts, options, async (batch) => {
    // Padding to the longest text of the batch, as transformers' pipelines do (padding=True); pads are
    // masked, so the result does not depend on the batch. Truncation only affects texts over 512 tokens.
    const { inputIds, attentionMask } = await clip.processor.process({ text: batch, padding: true, truncation: true });
    if (!inputIds) throw new Error('the processor returned no input ids');
    return clip.model.getTextFeatures({ inputIds, attentionMask });
  });
}

async function inBatches<T>(items: T[], options: EmbedOptions, run: (batch: T[]) => Promise<Tensor>): Promise<Matrix> {
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  const parts: Float32Array[] = [];
  let cols = 0;
  for (let start = 0; start < items.length; start += batchSize) {
    const batch = items.slice(start, start + batchSize);
    const m = toMatrix(await run(batch));
    if (m.rows !== batch.length) throw new Error(`the model returned ${m.rows} embeddings for ${batch.length} inputs`);
    cols = m.cols;
    parts.push((options.normalize ?? true) ? normalizeRows(m).data : m.data);
    options.onProgress?.(start + batch.length, items.length);
  }
  const data = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    data.set(p, offset);
    offset += p.length;
  }
  return { data, rows: items.length, cols };
}

export function toMatrix(t: Tensor): Matrix {
  if (t.dims.length !== 2) throw new Error(`expected a [batch, dim] tensor, got dims [${t.dims.join(', ')}]`);
  if (t.type !== 'float32') throw new Error(`expected a float32 tensor, got ${t.type}`);
  return { data: t.data as Float32Array, rows: t.dims[0], cols: t.dims[1] };
}

export function toTensor(m: Matrix): Tensor {
  return new Tensor('float32', m.data, [m.rows, m.cols]);
}
