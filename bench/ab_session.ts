// In-process, interleaved A/B of onnxruntime session options (issue 19) on one cached graph, for a
// shared machine: every variant's session is created in this one process, then timed round by round
// with the order flipped each round, and the medians compared. The graph is one the library built
// (graph cache: graphs/<tower>...-<key>/model.onnx); the options start from src/models/session.ts's.
//
//   node --import tsx bench/ab_session.ts --graph bench/.cache/graphs-ab-q8/graphs/vision-q8-<key>/model.onnx \
//     --inputs bench/.cache/inputs.safetensors [--batch 8] [--rounds 6] [--threads 2] [--variants default,nospin,basic,extended]
import * as ort from 'onnxruntime-node';

import { sessionOptions } from '../src/models/session.js';
import { readSafetensors } from './safetensors_io.js';

function arg(k: string, dflt?: string): string {
  const i = process.argv.indexOf(k);
  const v = i >= 0 ? process.argv[i + 1] : dflt;
  if (v === undefined) throw new Error(`ab_session: missing ${k}`);
  return v;
}
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };

type Opts = ort.InferenceSession.SessionOptions;
const VARIANTS: Record<string, (o: Opts) => Opts> = {
  default: (o) => o,
  // session.intra_op.allow_spinning = 0: pool threads sleep instead of spinning between ops
  nospin: (o) => ({ ...o, extra: { session: { intra_op: { allow_spinning: '0' } } } }),
  basic: (o) => ({ ...o, graphOptimizationLevel: 'basic' }),
  extended: (o) => ({ ...o, graphOptimizationLevel: 'extended' }),
};

async function main() {
  const threads = Number(arg('--threads', '2'));
  const batch = Number(arg('--batch', '8'));
  const rounds = Number(arg('--rounds', '6'));
  const names = arg('--variants', 'default,nospin,basic,extended').split(',');
  const px = readSafetensors(arg('--inputs')).get('pixel_values')!;
  const imageSize = px.shape.slice(1).reduce((a, b) => a * b, 1);
  const feeds = { pixel_values: new ort.Tensor('float32', (px.data as Float32Array).slice(0, batch * imageSize), [batch, ...px.shape.slice(1)]) };

  const sessions: Record<string, ort.InferenceSession> = {};
  let fetch: string[] = [];
  for (const n of names) {
    const v = VARIANTS[n];
    if (!v) throw new Error(`ab_session: unknown variant ${n}`);
    sessions[n] = await ort.InferenceSession.create(arg('--graph'), v(sessionOptions({ threads })));
    fetch = [sessions[n]!.outputNames.includes('pooler_output') ? 'pooler_output' : sessions[n]!.outputNames[0]!];
    await sessions[n]!.run(feeds, fetch); // warm-up
  }
  const times: Record<string, number[]> = {};
  let ref: Float32Array | undefined;
  let maxDiff = 0;
  for (let round = 0; round < rounds; round++) {
    for (const n of round % 2 ? [...names].reverse() : names) {
      const t = performance.now();
      const out = (await sessions[n]!.run(feeds, fetch))[fetch[0]!]!.data as Float32Array;
      (times[n] ??= []).push((performance.now() - t) / 1000);
      if (!ref) ref = out;
      else for (let i = 0; i < out.length; i++) maxDiff = Math.max(maxDiff, Math.abs(out[i]! - ref[i]!));
    }
    console.error(`round ${round + 1}: ${names.map((n) => `${n} ${times[n]!.at(-1)!.toFixed(2)}s`).join(' / ')}`);
  }
  await Promise.all(Object.values(sessions).map((s) => s.release()));
  console.log(JSON.stringify({ threads, batch, max_abs_diff_between_variants: maxDiff, variants: Object.fromEntries(names.map((n) => [n, {
    median_s: median(times[n]!), times_s: times[n], ratio_to_first: median(times[n]!) / median(times[names[0]!]!),
  }])) }, null, 1));
}

main().catch((e) => { console.error(e); process.exit(1); });
