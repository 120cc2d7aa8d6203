// "Which model does this index need?" — the one answer `altclip index`, `altclip search` and
// `altclip serve --db` share: the recorded model, or the same weights under the path given as --model
// (models/fingerprint.ts resolveModel; other weights or another dtype are refused, naming what changed).
import type { Dtype, ResolvedModel } from '../models/fingerprint.js';
import { ImageIndex } from './image_index.js';
import { IndexFolderError } from './store.js';

/**
 * The model of the index in `db`, given an optional --model (hub repo id or folder) and --dtype.
 * Loads no model (hashes its files once: see fingerprint.ts). Throws IndexFolderError when there is no
 * index, or the model asked for is not the index's.
 */
export async function indexModel(db: string, requested: { model?: string; dtype?: Dtype } = {}): Promise<ResolvedModel> {
  const index = await ImageIndex.open(db, {
    ...(requested.model !== undefined ? { model: requested.model } : {}),
    ...(requested.dtype !== undefined ? { dtype: requested.dtype } : {}),
  });
  try {
    if (!index.model) throw new IndexFolderError(`${db}: no such index (run "altclip index <folder> --db ${db}" first)`);
    return index.model;
  } finally {
    await index.close();
  }
}
