export { embedImages, embedTexts, type EmbedOptions } from './embeddings.js';
export { imageTextSimilarity, logitScale, type SimilarityResult } from './similarity.js';
export {
  DEFAULT_HYPOTHESIS_TEMPLATE,
  zeroShotImageClassification,
  type LabelScore,
  type ZeroShotOptions,
} from './zero-shot.js';
export { loadAltCLIP, pipeline, type Pipeline, type PipelineTask, type PipelineTasks } from './pipeline.js';
export { DEFAULT_BATCH_SIZE, DEFAULT_MODEL } from './types.js';
export type { AltCLIPParts, BatchOptions, ImageInput, TaskModel, TaskProcessor } from './types.js';
