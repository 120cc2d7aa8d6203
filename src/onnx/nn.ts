// torch.nn building blocks as graph fragments. Activations are 2-D [tokens, features] between
// blocks, so that Linear layers are single Gemm nodes on the checkpoint's [out, in] weights.
import type { GraphBuilder } from './graph.js';

export interface LinearOptions {
  /**
   * int8 weights (GraphBuilder.quantizedWeight; the graph's requests are what quantize.ts quantizes),
   * with the input quantized as GraphBuilder.q8Activations says.
   */
  quantized?: boolean;
}

/** A row whose max |x| is below this is quantized with this as its max (all zeros stay zeros, no 0/0). */
const TINY_ROW_MAX = 1e-30;

/**
 * x [N, K] as uint8 A = round(x / s) + zp per row, s = max|x_row| / qmax (qmax 2^(bits-1) - 1,
 * zp 2^(bits-1), ties to even as QuantizeLinear rounds): each row's numbers depend on that row only.
 * Returns [A, s [N, 1]]; the same x (q, k and v's input) is quantized once.
 */
function quantizeRows(g: GraphBuilder, x: string, bits: 7 | 8): [string, string] {
  const key = `q8rows:${bits}:${x}`;
  const done = g.derived.get(key);
  if (done) return done as [string, string];
  const qmax = bits === 8 ? 127 : 63;
  const max = g.node('ReduceMax', [x], { axes: [1], keepdims: 1 });
  const negMin = g.node('Neg', [g.node('ReduceMin', [x], { axes: [1], keepdims: 1 })]);
  const scale = g.node('Div', [g.node('Max', [max, negMin, g.constFloat([TINY_ROW_MAX], [])]), g.constFloat([qmax], [])]);
  // QuantizeLinear per axis 0 (one scale per row); its zero point is per row too, all 2^(bits-1)
  const scale1d = g.node('Reshape', [scale, g.constInt64([-1])]);
  const zeroPoints = g.node('Expand', [g.constUint8(qmax + 1), g.node('Shape', [scale1d])]);
  const a = g.node('QuantizeLinear', [x, scale1d, zeroPoints], { axis: 0 });
  g.derived.set(key, [a, scale]);
  return [a, scale];
}

/** nn.Linear(inFeatures, outFeatures, bias) on x [N, in]: the HF weight [out, in] is used as stored. */
export function linear(g: GraphBuilder, x: string, prefix: string, inFeatures: number, outFeatures: number,
  bias = true, options: LinearOptions = {}): string {
  if (options.quantized) {
    const [b, bScale] = g.quantizedWeight(`${prefix}.weight`, [outFeatures, inFeatures]);
    const biasValue = bias ? g.weight(`${prefix}.bias`, [outFeatures]) : undefined;
    if (g.q8Activations.granularity === 'row') {
      // y = (A - zp) (B) * b_scale * s_row + bias: com.microsoft.MatMulIntegerToFloat(A, B, a_scale = 1,
      // b_scale, a_zero_point) computes the integer product (exact in int32) times b_scale
      const [a, rowScale] = quantizeRows(g, x, g.q8Activations.bits);
      const zp = g.constUint8((g.q8Activations.bits === 8 ? 127 : 63) + 1);
      const product = g.node('MatMulIntegerToFloat', [a, b, g.constFloat([1], []), bScale, zp], {}, { domain: 'com.microsoft' });
      const y = g.node('Mul', [product, rowScale]);
      return biasValue ? g.node('Add', [y, biasValue]) : y;
    }
    // com.microsoft.DynamicQuantizeMatMul(A float, B int8 [in, out], b_scale [out], b_zero_point (none: 0), bias)
    const inputs = [x, b, bScale];
    if (biasValue) inputs.push('', biasValue);
    return g.node('DynamicQuantizeMatMul', inputs, {}, { domain: 'com.microsoft' });
  }
  const inputs = [x, g.weight(`${prefix}.weight`, [outFeatures, inFeatures])];
  if (bias) inputs.push(g.weight(`${prefix}.bias`, [outFeatures]));
  return g.node('Gemm', inputs, { transB: 1 });
}

/** nn.LayerNorm(features, eps) over the last axis. */
export function layerNorm(g: GraphBuilder, x: string, prefix: string, features: number, eps: number): string {
  return g.node('LayerNormalization', [x, g.weight(`${prefix}.weight`, [features]), g.weight(`${prefix}.bias`, [features])],
    { axis: -1, epsilon: { float: eps } });
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

function geluErf(g: GraphBuilder, x: string): string {
  // x * 0.5 * (1 + erf(x / sqrt(2)))  (torch.nn.functional.gelu, approximate="none")
  const erf = g.node('Erf', [g.node('Div', [x, g.constFloat([Math.SQRT2], [])])]);
  return g.node('Mul', [g.node('Mul', [x, g.constFloat([0.5], [])]), g.node('Add', [erf, g.constFloat([1], [])])]);
}

function geluTanh(g: GraphBuilder, x: string): string {
  // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
  const cube = g.node('Mul', [g.node('Mul', [x, x]), x]);
  const inner = g.node('Mul', [g.node('Add', [x, g.node('Mul', [cube, g.constFloat([0.044715], [])])]),
    g.constFloat([SQRT_2_OVER_PI], [])]);
  const t = g.node('Add', [g.node('Tanh', [inner]), g.constFloat([1], [])]);
  return g.node('Mul', [g.node('Mul', [x, g.constFloat([0.5], [])]), t]);
}

function sigmoidTimes(g: GraphBuilder, x: string, alpha: number): string {
  const s = g.node('Sigmoid', [alpha === 1 ? x : g.node('Mul', [x, g.constFloat([alpha], [])])]);
  return g.node('Mul', [x, s]);
}

/** transformers' ACT2FN, for the names a CLIP / RoBERTa config may carry. */
export const ACT2FN: Record<string, (g: GraphBuilder, x: string) => string> = {
  gelu: geluErf,
  gelu_python: geluErf,
  gelu_new: geluTanh,
  gelu_fast: geluTanh,
  gelu_accurate: geluTanh,
  gelu_pytorch_tanh: geluTanh,
  gelu_10: (g, x) => g.node('Clip', [geluErf(g, x), g.constFloat([-10], []), g.constFloat([10], [])]),
  quick_gelu: (g, x) => sigmoidTimes(g, x, 1.702),
  silu: (g, x) => sigmoidTimes(g, x, 1),
  swish: (g, x) => sigmoidTimes(g, x, 1),
  relu: (g, x) => g.node('Relu', [x]),
  relu2: (g, x) => { const r = g.node('Relu', [x]); return g.node('Mul', [r, r]); },
  relu6: (g, x) => g.node('Clip', [x, g.constFloat([0], []), g.constFloat([6], [])]),
  leaky_relu: (g, x) => g.node('LeakyRelu', [x], { alpha: { float: 0.01 } }),
  sigmoid: (g, x) => g.node('Sigmoid', [x]),
  tanh: (g, x) => g.node('Tanh', [x]),
  mish: (g, x) => g.node('Mul', [x, g.node('Tanh', [g.node('Softplus', [x])])]),
  linear: (_g, x) => x,
};

export function activation(name: string, where: string): (g: GraphBuilder, x: string) => string {
  const fn = Object.hasOwn(ACT2FN, name) ? ACT2FN[name] : undefined; // never an inherited property ("toString")
  if (!fn) {
    throw new Error(`${where}: unsupported hidden_act ${JSON.stringify(name)} (supported: ${Object.keys(ACT2FN).join(', ')})`);
  }
  return fn;
}
