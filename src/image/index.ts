// Image stage: decoding (sharp), Pillow-exact resampling, CLIPImageProcessor.
export type { ImageInput, RawImage } from './types.js';
export { loadImage, decodeImage, declaredSize, DEFAULT_MAX_PIXELS, type ImageDecodeOptions } from './decode.js';
export { resize, setResampleBackend, PIL_RESAMPLE, type Resample, type Region } from './resample.js';
export { decodeThreads, setDecodeThreads } from './pool.js';
export {
  CLIPImageProcessor,
  configFromDict,
  convertToRGB,
  dropAlpha,
  shortestEdgeSize,
  type ImageProcessorConfig,
  type PreprocessOverrides,
  type SizeDict,
} from './processor.js';
