export {
  embedImageBatches, embedImages, embedTextBatches, embedTexts,
} from './embeddings.js';
export { imageTextSimilarity, logitScale, type SimilarityResult } from './similarity.js';
export {
  DEFAULT_HYPOTHESIS_TEMPLATE,
  zeroShotImageClassification,
  type LabelScore,
  type ZeroShotOptions,
} from './zero-shot.js';
export { loadAltCLIP, pipeline, type LoadOptions, type Pipeline, type PipelineTask, type PipelineTasks } from './pipeline.js';
export { DEFAULT_BATCH_SIZE, DEFAULT_MODEL } from './types.js';
export type {
  AltCLIPParts, BatchOptions, EmbedOptions, EmbeddingBatch, ImageInput, InputFailure, ModelIdentity, TaskModel, TaskProcessor,
} from './types.js';
