// Where the time goes: runs one of our cached tower graphs under ONNX Runtime's profiler (same session
// options as the model) and sums the kernel times per op type. Started by bench/run.ts after the
// model has built its graphs; prints one JSON line.
//
//   node --import tsx bench/profile.ts --graph-cache DIR --tower vision|text --dtype fp32|q8
//        --inputs IN --batch N --threads N
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { sessionOptions } from '../src/models/session.js';
import { LARGE } from './generate_checkpoint.js';
import { readSafetensors } from './safetensors_io.js';

/** Matrix-multiply kernels (fp32 and int8), the convolution of the patch embedding included. */
export const GEMM_OPS = new Set(['MatMul', 'Gemm', 'FusedMatMul', 'FusedGemm', 'MatMulInteger', 'MatMulIntegerToFloat',
  'DynamicQuantizeMatMul', 'QGemm', 'MatMulNBits', 'Conv', 'FusedConv']);

/** FLOPs (2 per multiply-add) of every matrix product of a tower (Linear layers, attention products,
 * patch convolution), for BAAI/AltCLIP's sizes. */
export function towerFlops(tower: 'vision' | 'text', batch: number, seq: number): number {
  const c = tower === 'vision' ? LARGE.vision : LARGE.text;
  const d = c.hidden, f = c.ffn;
  const linear = 2 * batch * seq * (4 * d * d + 2 * d * f);
  const attention = 2 * 2 * batch * seq * seq * d;
  let flops = c.layers * (linear + attention);
  if (tower === 'vision') flops += 2 * batch * (seq - 1) * d * 3 * LARGE.vision.patch ** 2 + 2 * batch * d * LARGE.projectionDim;
  else flops += 2 * batch * seq * d * LARGE.text.projectDim + 2 * batch * LARGE.text.projectDim * LARGE.projectionDim;
  return flops;
}

interface Event { cat: string; name: string; ts: number; dur: number; args?: { op_name?: string } }

function arg(k: string): string {
  const i = process.argv.indexOf(k);
  if (i < 0) throw new Error(`profile: missing ${k}`);
  return process.argv[i + 1];
}

async function main() {
  const tower = arg('--tower') as 'vision' | 'text';
  const dtype = arg('--dtype');
  const batch = Number(arg('--batch'));
  const threads = Number(arg('--threads'));
  const graphs = join(arg('--graph-cache'), 'graphs');
  // plain graphs only: `<tower>-<hash>` (fp32) or `<tower>-q8w<bits>-<hash>` (q8; towers.ts's graphName)
  const prefix = dtype === 'q8' ? `${tower}-q8w*-` : `${tower}-`;
  const name = dtype === 'q8' ? new RegExp(`^${tower}-q8(w[78]f?)?-[0-9a-f]+$`) : new RegExp(`^${tower}-[0-9a-f]+$`);
  const dirs = readdirSync(graphs).filter((d) => name.test(d))
    .map((d) => join(graphs, d, 'model.onnx')).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (!dirs.length) throw new Error(`profile: no ${prefix}* graph under ${graphs} (run the model first)`);

  const x = readSafetensors(arg('--inputs'));
  let feeds: Record<string, ort.Tensor>, seq: number;
  if (tower === 'vision') {
    const px = x.get('pixel_values')!;
    const n = px.shape.slice(1).reduce((a, b) => a * b, 1);
    feeds = { pixel_values: new ort.Tensor('float32', (px.data as Float32Array).slice(0, batch * n), [batch, ...px.shape.slice(1)]) };
    seq = (LARGE.vision.image / LARGE.vision.patch) ** 2 + 1;
  } else {
    const ids = x.get('input_ids')!, mask = x.get('attention_mask')!;
    seq = ids.shape[1];
    feeds = {
      input_ids: new ort.Tensor('int64', (ids.data as BigInt64Array).slice(0, batch * seq), [batch, seq]),
      attention_mask: new ort.Tensor('int64', (mask.data as BigInt64Array).slice(0, batch * seq), [batch, seq]),
    };
  }

  const dir = mkdtempSync(join(tmpdir(), 'altclip-profile-'));
  try {
    const session = await ort.InferenceSession.create(dirs[0], {
      ...sessionOptions({ threads }), enableProfiling: true, profileFilePrefix: join(dir, 'profile'),
    });
    await session.run(feeds); // warm-up
    await session.run(feeds);
    session.endProfiling();
    await session.release();
    const file = readdirSync(dir).find((f) => f.startsWith('profile'));
    if (!file) throw new Error('profile: onnxruntime wrote no profile file');
    const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Event[];
    const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
    const last = runs[runs.length - 1];
    const byOp = new Map<string, number>();
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < last.ts || e.ts > last.ts + last.dur) continue;
      const op = e.args?.op_name ?? '?';
      byOp.set(op, (byOp.get(op) ?? 0) + e.dur / 1000);
    }
    const kernelMs = [...byOp.values()].reduce((a, b) => a + b, 0);
    const gemmMs = [...byOp].filter(([op]) => GEMM_OPS.has(op)).reduce((a, [, ms]) => a + ms, 0);
    const flops = towerFlops(tower, batch, seq);
    console.log(JSON.stringify({
      tower, dtype, batch, seq, run_ms: last.dur / 1000, kernel_ms: kernelMs, gemm_ms: gemmMs,
      gemm_flops: flops, gemm_gflops: flops / (gemmMs / 1000) / 1e9,
      ops: [...byOp].sort((a, b) => b[1] - a[1]).map(([op, ms]) => ({ op, ms, share: ms / kernelMs })),
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => { console.error(e instanceof Error ? e.stack ?? e.message : e); process.exit(1); });
}
