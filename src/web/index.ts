// altclip in the browser (`altclip/web`, built into dist/web/altclip.js): the Node package's names,
// loading from a base URL or the HF hub, running on onnxruntime-web.
export { Tensor, type TensorType } from '../tensor.js';
export { AltCLIPConfig, AltCLIPTextConfig, AltCLIPVisionConfig } from '../config.js';
export { XLMRobertaTokenizer } from '../tokenizer/index.js';
export { CLIPImageProcessor } from '../image/processor.js';
export { AltCLIPModel, AltCLIPProcessor, modelBaseUrl, type WebModelOptions, type WebPretrainedOptions } from './model.js';
export { WebImageProcessor, toRawImage, type WebImageInput } from './images.js';
export type { LoadProgress } from './loader.js';
export { clearCache } from './fetcher.js';
export { q8Scheme, type Q8Scheme } from './quantize.js';
export { zeroShotImageClassification, imageTextSimilarity } from '../tasks/index.js';
export { env } from 'onnxruntime-web';
