// Image-text similarity: cosine of the normalised embeddings, and the model's logits
// (logits_per_image = exp(logit_scale) * cosine, as AltCLIPModel.forward computes them).
import { embedImageMatrix, embedTextMatrix, toMatrix } from './embeddings.js';
import { matmulTransposed, row } from '../math.js';
import type { AltCLIPParts, BatchOptions, ImageInput, TaskModel } from './types.js';

export interface SimilarityResult {
  /** [images][texts] cosine similarity of image i and text j. */
  cosine: number[][];
  /** [images][texts] exp(logit_scale) * cosine: AltCLIPModel's logits_per_image. */
  logitsPerImage: number[][];
}

export async function imageTextSimilarity(
  clip: AltCLIPParts,
  images: ImageInput | ImageInput[],
  texts: string | string[],
  options: BatchOptions = {},
): Promise<SimilarityResult> {
  const imageList = Array.isArray(images) ? images : [images];
  const textList = typeof texts === 'string' ? [texts] : texts;
  const textEmbeds = await embedTextMatrix(clip, textList, { batchSize: options.batchSize });
  const imageEmbeds = await embedImageMatrix(clip, imageList, options);
  const cosine = matmulTransposed(imageEmbeds, textEmbeds);
  const scale = await logitScale(clip);
  return { cosine, logitsPerImage: cosine.map((r) => r.map((c) => c * scale)) };
}

const scales = new WeakMap<TaskModel, Promise<number>>();

/**
 * exp(logit_scale) of the model, in float32 as forward() applies it. AltCLIPModel has it as
 * `logitScaleExp`; for a model without it, it is read off one small forward call
 * (logits_per_image = exp(logit_scale) * text_embeds . image_embeds, on a synthetic image and a few
 * texts; the pair with the largest |cosine| is used) and cached.
 */
export function logitScale(clip: AltCLIPParts): Promise<number> {
  const known = clip.model.logitScaleExp;
  if (typeof known === 'number') return Promise.resolve(Math.fround(known));
  let scale = scales.get(clip.model);
  if (!scale) {
    scale = measureLogitScale(clip);
    scales.set(clip.model, scale);
    scale.catch(() => scales.delete(clip.model));
  }
  return scale;
}

async function measureLogitScale(clip: AltCLIPParts): Promise<number> {
  const size = 32;
  const data = new Uint8Array(size * size * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37) % 256;
  const probe = await clip.processor.process({
    text: ['a photo', 'x', 'an image of something'],
    images: [{ data, width: size, height: size, channels: 3 }],
    padding: true,
  });
  const out = await clip.model.forward(probe);
  const image = row(toMatrix(out.imageEmbeds), 0);
  const texts = toMatrix(out.textEmbeds);
  const logits = out.logitsPerImage.data as Float32Array;
  let best = 0;
  let scale = NaN;
  for (let j = 0; j < texts.rows; j++) {
    const t = row(texts, j);
    let dot = 0;
    for (let k = 0; k < t.length; k++) dot += image[k] * t[k];
    if (Math.abs(dot) > best) {
      best = Math.abs(dot);
      scale = logits[j] / dot;
    }
  }
  if (!(best > 1e-3) || !Number.isFinite(scale)) throw new Error('could not read the logit scale off the model outputs');
  return scale;
}
