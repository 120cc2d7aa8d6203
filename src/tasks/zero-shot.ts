// Zero-shot image classification, as transformers' ZeroShotImageClassificationPipeline
// (pipelines/zero_shot_image_classification.py, 4.40.2): each label is put into the hypothesis
// template, scores = softmax over the image's logits_per_image row, sorted by score, top_k kept.
import { imageEmbeddingMatrix, textEmbeddingMatrix } from './embeddings.js';
import { type Matrix, matmulTransposed, meanOfRowGroups, normalizeRows, sigmoid, softmax } from '../math.js';
import { logitScale } from './similarity.js';
import type { AltCLIPParts, BatchOptions, ImageInput } from './types.js';

/** transformers' default `hypothesis_template`. */
export const DEFAULT_HYPOTHESIS_TEMPLATE = 'This is a photo of {}.';

export interface ZeroShotOptions extends BatchOptions {
  /**
   * Where `{}` stands for the label (default "This is a photo of {}."). Several templates are a prompt
   * ensemble (CLIP paper, sec. 3.1.4): a label's text embedding is the mean of its normalised
   * embeddings over the templates, normalised again.
   */
  hypothesisTemplate?: string | string[];
  /** Score each label on its own, sigmoid(logit), instead of a softmax over the labels. */
  multiLabel?: boolean;
  /** Keep only the best `topK` labels. */
  topK?: number;
}

export interface LabelScore {
  label: string;
  score: number;
}

/**
 * One image: its labels with scores, best first. Several images: one such list per image (with
 * onError: per image kept, in order; the failures are reported with their indices).
 */
export async function zeroShotImageClassification(
  clip: AltCLIPParts, images: ImageInput, candidateLabels: string[], options?: ZeroShotOptions): Promise<LabelScore[]>;
export async function zeroShotImageClassification(
  clip: AltCLIPParts, images: ImageInput[], candidateLabels: string[], options?: ZeroShotOptions): Promise<LabelScore[][]>;
export async function zeroShotImageClassification(
  clip: AltCLIPParts,
  images: ImageInput | ImageInput[],
  candidateLabels: string[],
  options: ZeroShotOptions = {},
): Promise<LabelScore[] | LabelScore[][]> {
  checkTopK(options.topK);
  const labelEmbeds = await labelEmbeddings(clip, candidateLabels, options.hypothesisTemplate, options);
  const imageEmbeds = await imageEmbeddingMatrix(clip, Array.isArray(images) ? images : [images], options);
  const results = scoreLabels(imageEmbeds, labelEmbeds, candidateLabels, logitScale(clip), options);
  return Array.isArray(images) ? results : results[0] ?? [];
}

/**
 * The text embedding of each label, [labels, projection_dim], normalised: its template-filled text's
 * embedding, or with several templates the normalised mean over them (prompt ensembling).
 */
async function labelEmbeddings(
  clip: AltCLIPParts,
  candidateLabels: string[],
  hypothesisTemplate: string | string[] = DEFAULT_HYPOTHESIS_TEMPLATE,
  options: BatchOptions = {},
): Promise<Matrix> {
  const labels = checkLabels(candidateLabels);
  const templates = checkTemplates(hypothesisTemplate);
  // Texts in label-major order: label 0 with every template, then label 1, ...
  const texts = labels.flatMap((label) => templates.map((t) => fillTemplate(t, label)));
  const textEmbeds = await textEmbeddingMatrix(clip, texts, { batchSize: options.batchSize, signal: options.signal });
  return templates.length > 1 ? normalizeRows(meanOfRowGroups(textEmbeds, templates.length)) : textEmbeds;
}

/**
 * Per image (row of `imageEmbeds`, normalised): logits = scale * cosine with each label, scores =
 * softmax over the labels (multiLabel: sigmoid of each), sorted best first, the best topK kept.
 */
function scoreLabels(
  imageEmbeds: Matrix,
  labelEmbeds: Matrix,
  labels: string[],
  scale: number,
  options: Pick<ZeroShotOptions, 'multiLabel' | 'topK'> = {},
): LabelScore[][] {
  const topK = checkTopK(options.topK) ?? labels.length;
  return matmulTransposed(imageEmbeds, labelEmbeds).map((cosines) => {
    const logits = cosines.map((c) => c * scale);
    const scores = options.multiLabel ? logits.map(sigmoid) : softmax(logits);
    return labels
      .map((label, j) => ({ label, score: scores[j]! }))
      .sort((a, b) => b.score - a.score)
      .slice(0, topK);
  });
}

function checkTopK(topK: number | undefined): number | undefined {
  if (topK !== undefined && (!Number.isInteger(topK) || topK < 1)) throw new RangeError(`topK must be a positive integer, got ${topK}`);
  return topK;
}

/** Python's `template.format(label)` for templates whose only field is `{}`. */
export function fillTemplate(template: string, label: string): string {
  return template.replaceAll('{}', () => label); // a function: "$&" in a label stays literal
}

function checkLabels(labels: unknown): string[] {
  if (!Array.isArray(labels)) throw new TypeError('candidateLabels must be an array of strings');
  if (labels.length === 0) throw new Error('no candidate labels given: give at least one label');
  for (const l of labels) {
    if (typeof l !== 'string') throw new TypeError(`candidate labels must be strings, got ${typeof l}`);
    if (l.trim() === '') throw new Error('a candidate label is empty');
  }
  return labels;
}

function checkTemplates(template: string | string[]): string[] {
  const list = typeof template === 'string' ? [template] : template;
  if (!Array.isArray(list) || list.length === 0) throw new Error('no hypothesis template given');
  for (const t of list) {
    if (typeof t !== 'string' || !t.includes('{}')) {
      throw new Error(`hypothesis template ${JSON.stringify(t)} has no {} where the label goes`);
    }
  }
  return list;
}
