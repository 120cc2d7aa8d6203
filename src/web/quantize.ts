// The browser build's q8 weights (replaces models/quantize.ts where models/altclip.ts imports it).
// The page quantizes each Linear weight as it arrives (loader.ts, with the shared quantizeLinear) and
// never keeps its float32 bytes; the model then finds the int8 tensors here.
import type { TensorRef, Weights } from '../weights/index.js';

export { isQuantizedLinear, quantizeLinear } from '../models/quantize.js';

const quantized = new WeakMap<Weights, Map<string, TensorRef>>();

export function setQuantizedWeights(weights: Weights, tensors: Map<string, TensorRef>): void {
  quantized.set(weights, tensors);
}

/** Same signature as models/quantize.ts; the cache folder plays no part in the page. */
export function quantizedWeights(weights: Weights, _cacheDir: string): Map<string, TensorRef> {
  const q8 = quantized.get(weights);
  if (!q8) throw new Error('altclip (browser): dtype "q8" weights are made while loading; load the model with { dtype: "q8" }');
  return q8;
}
