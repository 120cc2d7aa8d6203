// What the tasks need from a model and a processor, and the options every task shares. AltCLIPModel
// and AltCLIPProcessor satisfy these structurally; tests may pass small stand-ins.
import type { ModelFingerprint } from '../models/fingerprint.js';
import type { Tensor } from '../tensor.js';
import type { ImageInput } from '../image/index.js';

export type { ImageInput };

/** The model used when none is named. */
export const DEFAULT_MODEL = 'BAAI/AltCLIP';
/** Inputs per model call. */
export const DEFAULT_BATCH_SIZE = 8;

export interface TaskModel {
  /** projection_dim: the width of every embedding (also of an empty result). */
  readonly config: { readonly projectionDim: number };
  /** exp(logit_scale), the temperature forward() applies to the cosine similarities. */
  readonly logitScaleExp: number;
  /** [B, projection_dim], not normalised. */
  getTextFeatures(inputs: { inputIds: Tensor; attentionMask?: Tensor }): Promise<Tensor>;
  /** [B, projection_dim], not normalised. */
  getImageFeatures(inputs: { pixelValues: Tensor }): Promise<Tensor>;
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

/** Which model the embeddings come from: what `altclip embed --resume` and an index compare. */
export interface ModelIdentity {
  /** The hub repo id, or the absolute real path of a local folder. */
  model: string;
  /** The hub commit (40 hex digits) the files came from; null for a local folder. */
  revision: string | null;
  dtype: 'fp32' | 'q8';
  projectionDim: number;
  /** Its weights' fingerprint (models/fingerprint.ts), where computed: an index compares it. */
  fingerprint?: ModelFingerprint;
}

/** A loaded model and its processor: what every task runs on. */
export interface AltCLIPParts {
  model: TaskModel;
  processor: TaskProcessor;
  /** Set by loadAltCLIP. */
  identity?: ModelIdentity;
}

/** An input that could not be read or decoded. */
export interface InputFailure {
  /** Its position in the inputs given to the task. */
  index: number;
  /** How to name it: the path or URL, or "<input #i>" for bytes / raw pixels. */
  input: string;
  /** Its message names the input. */
  error: Error;
}

export interface BatchOptions {
  /** Inputs per model call (default 8). */
  batchSize?: number;
  /** Called after each batch: inputs finished so far (embedded or failed) and the total. */
  onProgress?: (done: number, total: number) => void;
  /**
   * With it: an input that cannot be read or decoded is reported here and skipped (no row for it).
   * Without it: the first such input throws an Error naming the input.
   */
  onError?: (failure: InputFailure) => void;
  /** Stops between batches: the task throws the signal's reason (an AbortError by default). */
  signal?: AbortSignal;
}

export interface EmbedOptions extends BatchOptions {
  /** L2-normalise each embedding (default true), as forward() does for image_embeds/text_embeds. */
  normalize?: boolean;
}

/** Rows of one batch: `embeddings[k]` is the embedding of input `indices[k]`, in input order. */
export interface EmbeddingBatch {
  indices: number[];
  embeddings: Float32Array[];
}
