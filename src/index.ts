// altclip: BAAI's AltCLIP in TypeScript on ONNX Runtime.
export { Tensor, type TensorType } from './tensor.js';
export { AltCLIPConfig, AltCLIPTextConfig, AltCLIPVisionConfig } from './config.js';
export {
  AltCLIPModel, AltCLIPTextModel, AltCLIPVisionModel, interpolatePositionEmbeddings,
  type AltCLIPOutput, type ModelOptions, type OutputFlags, type TextInputs, type TowerOutput, type VisionInputs,
} from './models/altclip.js';
export { resolveFile, type PretrainedOptions } from './hub/index.js';
export { loadWeights, openSafetensors, openTorchBin, type TensorRef, type Weights } from './weights/index.js';
