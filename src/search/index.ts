// Image search over an embedded LanceDB table: ImageIndex (library) behind `altclip index` / `altclip search`.
export {
  DEFAULT_INDEX_MODEL,
  ImageIndex,
  type ImageIndexOptions,
  type IndexUpdate,
  type SearchOptions,
  type SearchQuery,
  type SearchResult,
  type SkippedImage,
  type UpdateOptions,
} from './image_index.js';
export { indexModel } from './index_model.js';
export type { ModelFingerprint, ResolvedModel } from '../models/fingerprint.js';
export { DEFAULT_ANN, IndexFolderError, TABLE_NAME, type AnnOptions, type IndexMetadata } from './store.js';
export { IndexLockedError } from './lock.js';
export { IMAGE_EXTENSIONS } from './files.js';
