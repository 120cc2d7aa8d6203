// altclip: BAAI's AltCLIP in TypeScript on ONNX Runtime. Everything public is exported here.
export { Tensor, type TensorType } from './tensor.js';
export { AltCLIPConfig, AltCLIPTextConfig, AltCLIPVisionConfig } from './config.js';
export { CONFIG_PRESETS, configPreset, configPresetJson, type ConfigPresetName } from './config_presets.js';
export {
  AltCLIPModel, AltCLIPTextModel, AltCLIPVisionModel, interpolatePositionEmbeddings,
  type AltCLIPOutput, type ModelOptions, type OutputFlags, type TextInputs, type TowerOutput, type VisionInputs,
} from './models/altclip.js';
export { defaultGraphCacheDir, freedBytes, listCache, pruneCache, type CacheEntry } from './models/graph_cache.js';
export { DEFAULT_Q8_SCHEME, Q8_SCHEMES, convertToQ8, q8Scheme, q8SchemeName, q8SchemeOf, type ConvertResult, type Q8Scheme } from './models/quantize.js';
export { XLMRobertaTokenizer } from './tokenizer/index.js';
export type { BatchEncodeOptions, BatchEncoding, DecodeOptions, EncodeOptions, TokenizerOptions } from './tokenizer/index.js';
export * from './image/index.js';
export { AltCLIPProcessor, type ProcessInputs, type ProcessorOutput } from './processor.js';
export * from './tasks/index.js';
export { HubError, resolveFile, type PretrainedOptions } from './hub/index.js';
export * from './search/index.js';
export { findNonFinite, loadWeights, openSafetensors, openTorchBin, type TensorRef, type Weights } from './weights/index.js';
