// One Linear layer, in-process interleaved A/B of the q8 schemes' graphs (onnx/nn.ts' linear, as the
// model builds them) against fp32 Gemm, at the shapes of the full-size model's MLP (issue 25). For a
// shared machine: the variants alternate call by call, and medians of many short calls are compared.
//
//   node --import tsx bench/q8_linear_ab.ts [--rows 2056] [--in 1024] [--out 4096] [--rounds 31] [--threads 2]
import * as ort from 'onnxruntime-node';

import { GraphBuilder, DataType } from '../src/onnx/graph.js';
import { linear } from '../src/onnx/nn.js';
import { Q8_SCHEMES, quantizeLinear } from '../src/models/quantize.js';
import { quantizedNames } from '../src/onnx/graph.js';
import type { TensorRef } from '../src/weights/index.js';

const arg = (k: string, d: string) => { const i = process.argv.indexOf(k); return i >= 0 ? process.argv[i + 1]! : d; };
const N = Number(arg('--rows', '2056')), K = Number(arg('--in', '1024')), M = Number(arg('--out', '4096'));
const rounds = Number(arg('--rounds', '31')), threads = Number(arg('--threads', '2'));
let seed = 7;
const rnd = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 - 0.5; };
const W = Float32Array.from({ length: M * K }, () => rnd() * 0.05);
const bias = Float32Array.from({ length: M }, () => rnd() * 0.1);
const X = Float32Array.from({ length: N * K }, () => rnd() * 2);
const ref = (name: string, dtype: TensorRef['dtype'], shape: number[], a: ArrayBufferView): TensorRef =>
  ({ name, dtype, shape, file: '', offset: 0, byteLength: a.byteLength, data: new Uint8Array(a.buffer, a.byteOffset, a.byteLength) });

function model(scheme?: string): Uint8Array {
  const tensors = new Map<string, TensorRef>([['l.weight', ref('l.weight', 'F32', [M, K], W)], ['l.bias', ref('l.bias', 'F32', [M], bias)]]);
  const g = new GraphBuilder('l', { get: (n) => tensors.get(n) });
  const s = scheme ? Q8_SCHEMES[scheme]! : undefined;
  if (s) g.q8Activations = { granularity: s.activations, bits: s.activationBits };
  const x = g.input('x', DataType.FLOAT, ['n', K]);
  g.output(linear(g, x, 'l', K, M, true, { quantized: Boolean(s) }), 'y');
  if (s) {
    const { q, scale } = quantizeLinear(W, M, K, s.weightBits);
    const [qn, sn, zn] = quantizedNames('l.weight');
    g.addQuantized(new Map([[qn, ref(qn, 'I8', [K, M], q)], [sn, ref(sn, 'F32', [M], scale)], [zn, ref(zn, 'I8', [M], new Int8Array(M))]]));
  }
  return g.encode(() => '', { '': 17, 'com.microsoft': 1 });
}

const names = ['fp32', ...arg('--schemes', 'altclip-q8-w8a7-row-v1,altclip-q8-w8a8-row-vnni-v1,ort-dynamic-w8-vnni,ort-dynamic-w7').split(',')];
const sessions: Record<string, ort.InferenceSession> = {};
for (const n of names) sessions[n] = await ort.InferenceSession.create(model(n === 'fp32' ? undefined : n), { intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 3 });
const x = new ort.Tensor('float32', X, [N, K]);
const times: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
for (const n of names) await sessions[n]!.run({ x });
for (let r = 0; r < rounds; r++) {
  for (const n of r % 2 ? [...names].reverse() : names) {
    const t = performance.now();
    await sessions[n]!.run({ x });
    times[n]!.push(performance.now() - t);
  }
}
const med = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1]!;
const base = med(times.fp32!);
const os = await import('node:os');
console.log(`${N}x${K}x${M}, ${threads} threads, ${rounds} rounds, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
for (const n of names) console.log(`${n.padEnd(30)} median ${med(times[n]!).toFixed(1)} ms  ${(med(times[n]!) / base).toFixed(3)} x fp32`);
