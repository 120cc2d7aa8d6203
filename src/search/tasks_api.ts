// TODO(search): temporary stand-in for the tasks API of /work/TEAM.md (embedImageBatches with onError,
// loadAltCLIP(..., { parts }), identity), until helper `tasks` lands it on main. Same signatures, so
// the swap is an import change.
import * as fs from 'node:fs';
import type { ModelOptions } from '../models/altclip.js';
import { embedImageMatrix, embedTextMatrix } from '../tasks/embeddings.js';
import { splitRows } from '../tasks/math.js';
import type { AltCLIPParts, ImageInput } from '../tasks/types.js';

export interface ModelIdentity {
  model: string;
  revision: string | null;
  dtype: 'fp32' | 'q8';
  projectionDim: number;
}
export type Parts = AltCLIPParts & { identity?: ModelIdentity };
export interface InputFailure { index: number; input: string; error: Error }
export interface EmbedOptions {
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
  onError?: (failure: InputFailure) => void;
  signal?: AbortSignal;
}
export interface EmbeddingBatch { indices: number[]; embeddings: Float32Array[] }

export async function loadAltCLIP(model: string, options: ModelOptions & { parts?: 'text' | 'vision' | 'both' } = {}): Promise<Parts> {
  const { parts: _parts, ...rest } = options;
  const { loadAltCLIP: load } = await import('../tasks/pipeline.js');
  const clip = await load(model, rest);
  const probe = await embedTextMatrix(clip, ['x']);
  const identity: ModelIdentity = {
    model: fs.existsSync(model) ? fs.realpathSync(model) : model,
    revision: null,
    dtype: rest.dtype ?? 'fp32',
    projectionDim: probe.cols,
  };
  return { ...clip, identity };
}

export async function* embedImageBatches(clip: AltCLIPParts, images: ImageInput[], options: EmbedOptions = {}): AsyncGenerator<EmbeddingBatch> {
  const batchSize = options.batchSize ?? 8;
  for (let start = 0; start < images.length; start += batchSize) {
    options.signal?.throwIfAborted();
    const batch = images.slice(start, start + batchSize);
    const indices: number[] = [];
    const embeddings: Float32Array[] = [];
    try {
      embeddings.push(...splitRows(await embedImageMatrix(clip, batch)));
      indices.push(...batch.map((_, i) => start + i));
    } catch (err) {
      if (!options.onError) throw err;
      for (let i = 0; i < batch.length; i++) {
        try {
          embeddings.push(...splitRows(await embedImageMatrix(clip, [batch[i]!])));
          indices.push(start + i);
        } catch (e) {
          options.onError({ index: start + i, input: String(batch[i]), error: e as Error });
        }
      }
    }
    options.onProgress?.(Math.min(start + batchSize, images.length), images.length);
    yield { indices, embeddings };
  }
}

export async function* embedTextBatches(clip: AltCLIPParts, texts: string[], options: EmbedOptions = {}): AsyncGenerator<EmbeddingBatch> {
  const m = await embedTextMatrix(clip, texts, options);
  yield { indices: texts.map((_, i) => i), embeddings: splitRows(m) };
}
