// Image-text similarity: cosine of the normalised embeddings, and the model's logits
// (logits_per_image = exp(logit_scale) * cosine, as AltCLIPModel.forward computes them).
import { imageEmbeddingMatrix, textEmbeddingMatrix } from './embeddings.js';
import { matmulTransposed } from '../math.js';
import type { AltCLIPParts, BatchOptions, ImageInput } from './types.js';

export interface SimilarityResult {
  /** [images][texts] cosine similarity of image i and text j (with onError: the images kept). */
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
  const { batchSize, signal } = options;
  const textEmbeds = await textEmbeddingMatrix(clip, textList, { batchSize, signal });
  const imageEmbeds = await imageEmbeddingMatrix(clip, imageList, options);
  const cosine = matmulTransposed(imageEmbeds, textEmbeds);
  const scale = logitScale(clip);
  return { cosine, logitsPerImage: cosine.map((r) => r.map((c) => c * scale)) };
}

/** exp(logit_scale) of the model, in float32 as forward() applies it. */
export function logitScale(clip: AltCLIPParts): number {
  return Math.fround(clip.model.logitScaleExp);
}
