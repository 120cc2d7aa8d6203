// pipeline(task, model): a task bound to a loaded model, in the style of transformers(.js):
//   const classify = await pipeline('zero-shot-image-classification', 'BAAI/AltCLIP');
//   await classify('cat.jpg', ['a cat', '一只狗']);
import type { ModelOptions } from '../models/altclip.js';
import type { Tensor } from '../tensor.js';
import { type EmbedOptions, embedImages, embedTexts } from './embeddings.js';
import { type SimilarityResult, imageTextSimilarity } from './similarity.js';
import { type AltCLIPParts, type BatchOptions, DEFAULT_MODEL, type ImageInput } from './types.js';
import { type LabelScore, type ZeroShotOptions, zeroShotImageClassification } from './zero-shot.js';

export interface PipelineTasks {
  'zero-shot-image-classification': {
    (image: ImageInput, candidateLabels: string[], options?: ZeroShotOptions): Promise<LabelScore[]>;
    (images: ImageInput[], candidateLabels: string[], options?: ZeroShotOptions): Promise<LabelScore[][]>;
  };
  'image-text-similarity': (images: ImageInput | ImageInput[], texts: string | string[], options?: BatchOptions) => Promise<SimilarityResult>;
  /** Image embeddings [images, projection_dim] (transformers.js' name for the task). */
  'image-feature-extraction': (images: ImageInput | ImageInput[], options?: EmbedOptions) => Promise<Tensor>;
  /** Text embeddings [texts, projection_dim]. */
  'feature-extraction': (texts: string | string[], options?: EmbedOptions) => Promise<Tensor>;
}

export type PipelineTask = keyof PipelineTasks;

export type Pipeline<T extends PipelineTask> = PipelineTasks[T] &
  AltCLIPParts & { task: T; /** Releases the model's sessions. */ dispose(): Promise<void> };

/** Loads the model and processor of `pathOrRepoId` (a local folder or a hub repo id). */
export async function loadAltCLIP(pathOrRepoId: string = DEFAULT_MODEL, options: ModelOptions = {}): Promise<AltCLIPParts> {
  // Imported on first use: binding a task to an already loaded model needs none of the model code.
  const [{ AltCLIPProcessor }, { AltCLIPModel }] = await Promise.all([import('../processor.js'), import('../models/altclip.js')]);
  const processor = await AltCLIPProcessor.fromPretrained(pathOrRepoId, options);
  const model = await AltCLIPModel.fromPretrained(pathOrRepoId, options);
  return { model, processor };
}

/** `task` on `model`: a model id / folder (default BAAI/AltCLIP), or an already loaded model + processor. */
export async function pipeline<T extends PipelineTask>(
  task: T,
  model: string | AltCLIPParts = DEFAULT_MODEL,
  options: ModelOptions = {},
): Promise<Pipeline<T>> {
  const run = runners[task] as ((clip: AltCLIPParts) => PipelineTasks[T]) | undefined;
  if (!run) throw new Error(`unknown task ${JSON.stringify(task)}; known tasks: ${Object.keys(runners).join(', ')}`);
  const clip = typeof model === 'string' ? await loadAltCLIP(model, options) : model;
  return Object.assign(run(clip), {
    task,
    model: clip.model,
    processor: clip.processor,
    dispose: () => clip.model.dispose(),
  }) as Pipeline<T>;
}

const runners: { [T in PipelineTask]: (clip: AltCLIPParts) => PipelineTasks[T] } = {
  'zero-shot-image-classification': (clip) =>
    ((images: ImageInput | ImageInput[], labels: string[], options?: ZeroShotOptions) =>
      zeroShotImageClassification(clip, images as ImageInput[], labels, options)) as PipelineTasks['zero-shot-image-classification'],
  'image-text-similarity': (clip) => (images, texts, options) => imageTextSimilarity(clip, images, texts, options),
  'image-feature-extraction': (clip) => (images, options) => embedImages(clip, images, options),
  'feature-extraction': (clip) => (texts, options) => embedTexts(clip, texts, options),
};
