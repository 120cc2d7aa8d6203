// `altclip serve`: the HTTP server (see ARCHITECTURE.md "Server").
export { createServer, DEFAULT_BODY_LIMIT, DEFAULT_MAX_INPUTS, type ServerOptions } from './app.js';
export { DynamicBatcher, QueueFullError, InputError, ClosedError, type BatcherOptions, type RunBatch } from './batcher.js';
export { DEFAULT_BATCHING, EmbeddingService, type Modality } from './service.js';
export { DEFAULT_MAX_PIXELS_IN_FLIGHT, PixelBudget } from './budget.js';
export { isPrivateAddress, type UrlPolicy } from './images.js';
export { openSearchIndex, searchIndexOver, type SearchHit, type SearchIndex, type VectorSearcher } from './search.js';
