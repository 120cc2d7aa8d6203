// pipeline(task, model): a task bound to a loaded model, in the style of transformers(.js):
//   const classify = await pipeline('zero-shot-image-classification', 'BAAI/AltCLIP');
//   await classify('cat.jpg', ['a cat', '一只狗']);
import * as fs from 'node:fs';
import { type PretrainedOptions, resolveFile } from '../hub/index.js';
import type { ModelOptions } from '../models/altclip.js';
import type { Tensor } from '../tensor.js';
import { embedImages, embedTexts } from './embeddings.js';
import { type SimilarityResult, imageTextSimilarity } from './similarity.js';
import { type AltCLIPParts, type BatchOptions, DEFAULT_MODEL, type EmbedOptions, type ImageInput, type ModelIdentity, type TaskModel } from './types.js';
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

export interface LoadOptions extends ModelOptions {
  /**
   * Which towers to load (default "both"): "text" gives a model that embeds texts only (what a search
   * by text needs), "vision" one that embeds images only.
   */
  parts?: 'text' | 'vision' | 'both';
}

/** Loads the model and processor of `pathOrRepoId` (a local folder or a hub repo id). */
export async function loadAltCLIP(pathOrRepoId: string = DEFAULT_MODEL, options: LoadOptions = {}): Promise<AltCLIPParts> {
  const { parts = 'both', ...modelOptions } = options;
  if (parts !== 'both' && parts !== 'text' && parts !== 'vision') {
    throw new Error(`parts must be "text", "vision" or "both", got ${JSON.stringify(parts)}`);
  }
  checkModelName(pathOrRepoId);
  // Imported on first use: binding a task to an already loaded model needs none of the model code.
  const [{ AltCLIPProcessor }, { AltCLIPModel }] = await Promise.all([import('../processor.js'), import('../models/altclip.js')]);
  const processor = await AltCLIPProcessor.fromPretrained(pathOrRepoId, modelOptions);
  // `parts` goes to the model too, so that it can leave the other tower unloaded.
  const full = await AltCLIPModel.fromPretrained(pathOrRepoId, { ...modelOptions, parts } as ModelOptions);
  const identity: ModelIdentity = {
    ...(await modelSource(pathOrRepoId, modelOptions)),
    dtype: modelOptions.dtype ?? 'fp32',
    projectionDim: full.config.projectionDim,
  };
  return { model: parts === 'both' ? full : oneTower(full, parts), processor, identity };
}

/** A model name that cannot be one: a clear error before anything is looked up. */
function checkModelName(pathOrRepoId: string): void {
  if (typeof pathOrRepoId !== 'string' || pathOrRepoId.trim() === '') {
    throw new Error('no model given: name a hub repo id (e.g. BAAI/AltCLIP) or a local model folder');
  }
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(pathOrRepoId);
  } catch {
    // not a local path: a hub repo id
  }
  if (stat && !stat.isDirectory()) {
    throw new Error(`${pathOrRepoId} is a file, not a model folder: give the folder that holds its config.json, or a hub repo id`);
  }
}

/** Where the files came from: a local folder's real path, or the hub repo and its commit. */
async function modelSource(pathOrRepoId: string, options: PretrainedOptions): Promise<Pick<ModelIdentity, 'model' | 'revision'>> {
  if (fs.existsSync(pathOrRepoId)) return { model: fs.realpathSync(pathOrRepoId), revision: null };
  // The cache keeps hub files under snapshots/<commit>/ (huggingface_hub's layout); config.json is
  // already there, so this reads no network.
  const config = await resolveFile(pathOrRepoId, 'config.json', options);
  const commit = config ? /[\\/]snapshots[\\/]([0-9a-f]{40})[\\/]/.exec(config)?.[1] : undefined;
  return { model: pathOrRepoId, revision: commit ?? null };
}

/** The model with one tower: the other's features are a clear error. */
function oneTower(model: TaskModel, part: 'text' | 'vision'): TaskModel {
  const missing = (what: string) => async (): Promise<never> => {
    throw new Error(`this model was loaded with parts: "${part}", so it cannot embed ${what}; load it with parts: "both"`);
  };
  return {
    config: model.config,
    logitScaleExp: model.logitScaleExp,
    getTextFeatures: part === 'text' ? model.getTextFeatures.bind(model) : missing('texts'),
    getImageFeatures: part === 'vision' ? model.getImageFeatures.bind(model) : missing('images'),
    dispose: () => model.dispose(),
  };
}

/** `task` on `model`: a model id / folder (default BAAI/AltCLIP), or an already loaded model + processor. */
export async function pipeline<T extends PipelineTask>(
  task: T,
  model: string | AltCLIPParts = DEFAULT_MODEL,
  options: LoadOptions = {},
): Promise<Pipeline<T>> {
  const run = runners[task] as ((clip: AltCLIPParts) => PipelineTasks[T]) | undefined;
  if (!run) throw new Error(`unknown task ${JSON.stringify(task)}; known tasks: ${Object.keys(runners).join(', ')}`);
  const clip = typeof model === 'string' ? await loadAltCLIP(model, options) : model;
  return Object.assign(run(clip), {
    task,
    model: clip.model,
    processor: clip.processor,
    identity: clip.identity,
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
