// The browser build's q8 weights (replaces models/quantize.ts where models/towers.ts imports it).
// The page quantizes each Linear weight the graphs take in int8 as it arrives (loader.ts, with the
// shared quantizeLinear) and never keeps its float32 bytes; the towers then find the int8 tensors here.
// Which weights: the ones the shared graphs ask for in q8 (modeling_altclip.ts decides, as in Node).
import type { AltCLIPConfig } from '../config.js';
import { buildTextGraph, buildVisionGraph } from '../models/modeling_altclip.js';
import { GraphBuilder } from '../onnx/graph.js';
import type { TensorRef, Weights } from '../weights/index.js';

import { DEFAULT_Q8_SCHEME, Q8_SCHEMES, type Q8Scheme } from '../models/quantize.js';

export { quantizeLinear, type Q8Scheme } from '../models/quantize.js';

/**
 * models/quantize.ts' prequantizedScheme for the page, which reads no file headers: a checkpoint with
 * int8 tensors (altclip convert) is taken to be of the page's scheme (the default).
 */
export function prequantizedScheme(weights: Weights, _source: string): Q8Scheme | undefined {
  for (const name of weights.tensors.keys()) if (name.endsWith('.q8')) return q8Scheme();
  return undefined;
}

/**
 * The page's q8 scheme: the Node package's default (models/quantize.ts), so a page and a Node process
 * compute the same vectors (the same integers; only float rounding differs). The page has no opt-in.
 */
export function q8Scheme(): Q8Scheme {
  return Q8_SCHEMES[DEFAULT_Q8_SCHEME]!;
}

/**
 * The [out, in] Linear weights the model's q8 graphs take in int8 (GraphBuilder's `quantized`), found
 * by building both towers' plain graphs on the checkpoint's directory (no tensor bytes are read).
 */
export function linearsToQuantize(config: AltCLIPConfig, refs: ReadonlyMap<string, TensorRef>): Set<string> {
  const source = { get: (name: string) => refs.get(name) };
  const scheme = q8Scheme();
  const q8 = { full: false, quantized: true, weightBits: scheme.weightBits, int8TextAttention: scheme.textAttention };
  const text = new GraphBuilder('text-q8', source);
  buildTextGraph(text, config.textConfig, q8, { prefix: 'text_model', projectionDim: config.projectionDim });
  const vision = new GraphBuilder('vision-q8', source);
  buildVisionGraph(vision, config.visionConfig, q8, { prefix: 'vision_model', projectionDim: config.projectionDim });
  return new Set([...text.quantized, ...vision.quantized]);
}

const quantized = new WeakMap<Weights, Map<string, TensorRef>>();

export function setQuantizedWeights(weights: Weights, tensors: Map<string, TensorRef>): void {
  quantized.set(weights, tensors);
}

/**
 * Same signature as models/quantize.ts: the int8 tensors of `names`, made while loading; the cache
 * folder plays no part in the page. A name not quantized while loading is left out (the graph then
 * reports it as a missing quantized weight).
 */
export function quantizedWeights(weights: Weights, _names: string[], _cacheDir: string | undefined, _bits?: number): Map<string, TensorRef> {
  const q8 = quantized.get(weights);
  if (!q8) throw new Error('altclip (browser): dtype "q8" weights are made while loading; load the model with { dtype: "q8" }');
  return q8;
}
