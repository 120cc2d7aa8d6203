// What the tasks need from a model and a processor. AltCLIPModel and AltCLIPProcessor satisfy these
// structurally; tests may pass small stand-ins.
import type { Tensor } from '../tensor.js';
import type { ImageInput } from '../image/index.js';

export type { ImageInput };

/** The model used when none is named. */
export const DEFAULT_MODEL = 'BAAI/AltCLIP';
/** Inputs per model call. */
export const DEFAULT_BATCH_SIZE = 8;

export interface TaskModel {
  /** [B, projection_dim], not normalised. */
  getTextFeatures(inputs: { inputIds: Tensor; attentionMask?: Tensor }): Promise<Tensor>;
  /** [B, projection_dim], not normalised. */
  getImageFeatures(inputs: { pixelValues: Tensor }): Promise<Tensor>;
  /** exp(logit_scale); without it, it is read once off forward()'s `logitsPerImage` (see similarity.ts). */
  readonly logitScaleExp?: number;
  forward(inputs: { inputIds?: Tensor; attentionMask?: Tensor; pixelValues?: Tensor }): Promise<{
    logitsPerImage: Tensor;
    textEmbeds: Tensor;
    imageEmbeds: Tensor;
  }>;
  dispose(): Promise<void>;
}

export interface TaskProcessor {
  process(inputs: {
    text?: string | string[];
    images?: ImageInput | ImageInput[];
    padding?: boolean | 'longest' | 'max_length';
    truncation?: boolean;
  }): Promise<{ inputIds?: Tensor; attentionMask?: Tensor; pixelValues?: Tensor }>;
}

/** A loaded model and its processor: what every task runs on. */
export interface AltCLIPParts {
  model: TaskModel;
  processor: TaskProcessor;
}

export interface BatchOptions {
  /** Inputs per model call (default 8). */
  batchSize?: number;
  /** Called after each batch with the number of inputs done so far and the total. */
  onProgress?: (done: number, total: number) => void;
}
