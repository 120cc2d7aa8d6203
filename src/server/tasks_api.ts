// TEMPORARY stand-in for the tasks API agreed in TEAM.md (embedImageBatches / embedTextBatches with
// onError), until helper `tasks` lands it; then this file only re-exports from ../tasks/index.js.
import { embedImageMatrix, embedTextMatrix } from '../tasks/embeddings.js';
import { splitRows } from '../tasks/math.js';
import type { AltCLIPParts, ImageInput } from '../tasks/types.js';

export interface InputFailure { index: number; input: string; error: Error }
export interface EmbeddingBatch { indices: number[]; embeddings: Float32Array[] }
interface Options { batchSize?: number; onError?: (failure: InputFailure) => void }

export async function* embedImageBatches(clip: AltCLIPParts, images: ImageInput[], options: Options = {}): AsyncGenerator<EmbeddingBatch> {
  const size = options.batchSize ?? 8;
  for (let start = 0; start < images.length; start += size) {
    const batch = images.slice(start, start + size);
    try {
      yield { indices: batch.map((_, i) => start + i), embeddings: splitRows(await embedImageMatrix(clip, batch, { batchSize: size })) };
    } catch (err) {
      if (!options.onError) throw err;
      for (let i = 0; i < batch.length; i++) {
        try {
          yield { indices: [start + i], embeddings: splitRows(await embedImageMatrix(clip, [batch[i]!])) };
        } catch (e) {
          options.onError({ index: start + i, input: `<input #${start + i}>`, error: e as Error });
        }
      }
    }
  }
}

export async function* embedTextBatches(clip: AltCLIPParts, texts: string[], options: Options = {}): AsyncGenerator<EmbeddingBatch> {
  const size = options.batchSize ?? 8;
  for (let start = 0; start < texts.length; start += size) {
    const batch = texts.slice(start, start + size);
    yield { indices: batch.map((_, i) => start + i), embeddings: splitRows(await embedTextMatrix(clip, batch, { batchSize: size })) };
  }
}
