// `npm run bench`: full-size AltCLIP (random weights, BAAI/AltCLIP's config) — our model vs an eager
// PyTorch baseline measured in the same run, on the same inputs. Each configuration runs in its own
// child process (clean peak RSS, thread settings fixed before the libraries load).
//
//   npm run bench                         everything; writes BENCHMARKS.md
//   npm run bench -- --only image         a subset: load, image, text, or rows image1,image8,text1,text32
//   npm run bench -- --dtype q8           our q8 rows (+ cosine vs our fp32 if fp32 is measured too)
//   npm run bench -- --no-torch           skip the baseline; --torch-grid 1x1,2x1 picks torch settings
//   npm run bench -- --m18                only the AltCLIP-m18 section (ViT-H/14 + XLM-R large, random weights):
//                                         getImageFeatures / getTextFeatures batch 1, fp32 and q8, time and peak RSS,
//                                         alternating with BAAI/AltCLIP's shapes as the baseline (+ PyTorch where it
//                                         has OpenBLAS); rewrites only BENCHMARKS.md's m18 section
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { DEFAULT_SEED, defaultCheckpointDir, ensureCheckpoint, ensurePresetCheckpoint } from './generate_checkpoint.js';
import { writeAllInputs, writeInputs } from './inputs.js';
import { GEMM_OPS } from './profile.js';
import { readSafetensors } from './safetensors_io.js';
import { TORCH_MALLOC_ENV } from './torch_env.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const cache = join(here, '.cache');
const MODEL_MODULE = join(root, 'src', 'models', 'altclip.ts');
const ROWS = ['image1', 'image8', 'text1', 'text32'] as const;
type Row = (typeof ROWS)[number];
const ROW_LABEL: Record<Row, string> = {
  image1: 'getImageFeatures, batch 1', image8: 'getImageFeatures, batch 8',
  text1: 'getTextFeatures, batch 1 (8 tokens)', text32: 'getTextFeatures, batch 32 (≤16 tokens)',
};

interface RowResult { median_s: number; times_s: number[] }
interface RunResult { load_s: number; rss_after_load_bytes: number; peak_rss_bytes: number; rows: Partial<Record<Row, RowResult>> }
interface ProfileResult { tower: string; dtype: string; batch: number; seq: number; run_ms: number; kernel_ms: number; gemm_ms: number;
  gemm_flops: number; gemm_gflops: number; ops: { op: string; ms: number; share: number }[] }
interface TorchResult extends RunResult {
  torch: string; blas: string[]; threads: number; openblas_threads: string; setting: string;
  /** bench/torch_baseline.py: the kernel OpenBLAS picked, with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed for torch */
  openblas: { core: string; config: string; library: string; removed_env: Record<string, string> } | null;
  /** whether the checkpoint file stayed mapped after loading (tensors viewing a mmap: slower forward passes) */
  weights_file_mapped: boolean;
}

const program = new Command()
  .option('--only <parts>', 'comma list of: load, image, text, image1, image8, text1, text32', '')
  .option('--dtype <list>', 'our dtypes to measure: fp32, q8 (comma list)', 'fp32,q8')
  .option('--threads <n>', 'our intra-op threads', String(availableParallelism()))
  .option('--no-torch', 'skip the PyTorch baseline')
  .option('--torch-grid <list>', 'torch settings <torch threads>x<OpenBLAS threads>', '1x1,1x2,2x1,2x2')
  .option('--python <path>', 'python with torch (default: the first of /usr/bin/python3, python3 that imports torch)')
  .option('--warmup <n>', 'warm-up runs per row', '1')
  .option('--reps <n>', 'timed runs per row (0: per-row defaults: image1 5, image8 3, text1 10, text32 5)', '0')
  .option('--no-profile', "skip ONNX Runtime's per-op profile of our graphs")
  .option('--peak-gflops <n>', 'fp32 peak of this CPU for the GEMM efficiency line (default: cores x FLOP/cycle x 3.7 GHz; 64 FLOP/cycle on Zen 5 (cpu family 26) with AVX-512, 32 otherwise)')
  .option('--seed <n>', 'checkpoint seed', String(DEFAULT_SEED))
  .option('--write', 'write BENCHMARKS.md even for a subset run')
  .option('--no-write', 'do not write BENCHMARKS.md')
  .option('--m18', 'only the AltCLIP-m18 section (full-size ViT-H/14 + XLM-R large): image and text batch 1, fp32 and q8')
  .parse();
const opts = program.opts<{ only: string; dtype: string; threads: string; torch: boolean; torchGrid: string; python?: string;
  warmup: string; reps: string; seed: string; write?: boolean; profile: boolean; peakGflops?: string; m18?: boolean }>();

const only = opts.only.split(',').filter(Boolean);
for (const o of only) if (!['load', 'image', 'text', ...ROWS].includes(o)) program.error(`--only: unknown part "${o}"`);
const rows: Row[] = only.length ? ROWS.filter((r) => only.includes(r) || only.includes(r.replace(/\d+$/, ''))) : [...ROWS];
const measureLoad = !only.length || only.includes('load');
const dtypes = opts.dtype.split(',').filter(Boolean);
for (const d of dtypes) if (d !== 'fp32' && d !== 'q8') program.error(`--dtype: unknown dtype "${d}" (fp32, q8)`);
const log = (m: string) => process.stderr.write(m + '\n');

function runJson<T>(cmd: string, args: string[], env: NodeJS.ProcessEnv, what: string): T | null {
  const r = spawnSync(cmd, args, { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    log(`  ${what} failed (exit ${r.status ?? r.signal}):\n${(r.stderr || r.error?.message || '').trim().split('\n').slice(-15).join('\n')}`);
    return null;
  }
  const last = r.stdout.trim().split('\n').pop()!;
  return JSON.parse(last) as T;
}

function findPython(): string | null {
  for (const p of opts.python ? [opts.python] : ['/usr/bin/python3', 'python3']) {
    if (spawnSync(p, ['-c', 'import torch, numpy'], { stdio: 'ignore' }).status === 0) return p;
  }
  return null;
}

function machine(): { cpu: string; cores: string } {
  try {
    const out = execFileSync('lscpu', { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
    const field = (k: string) => out.match(new RegExp(`^${k}:\\s*(.+)$`, 'm'))?.[1].trim() ?? '?';
    return { cpu: field('Model name'), cores: field('CPU\\(s\\)') };
  } catch { return { cpu: '?', cores: String(availableParallelism()) }; }
}

// ---- numbers ----

function compare(a: Float32Array, b: Float32Array, dim: number) {
  let maxAbs = 0, minCos = 1;
  for (let r = 0; r < a.length / dim; r++) {
    let dot = 0, na = 0, nb = 0;
    for (let i = r * dim; i < (r + 1) * dim; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
      dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i];
    }
    minCos = Math.min(minCos, dot / Math.sqrt(na * nb));
  }
  return { maxAbs, minCos };
}

/** Cosine similarity matrix [images, texts] of two feature batches. */
function cosines(img: Float32Array, txt: Float32Array, dim: number): number[][] {
  const norm = (x: Float32Array) => { const o = Float32Array.from(x); for (let r = 0; r < o.length / dim; r++) { let n = 0; for (let i = 0; i < dim; i++) n += o[r * dim + i] ** 2; n = Math.sqrt(n); for (let i = 0; i < dim; i++) o[r * dim + i] /= n; } return o; };
  const I = norm(img), T = norm(txt);
  return Array.from({ length: I.length / dim }, (_, i) => Array.from({ length: T.length / dim }, (_, t) => {
    let s = 0; for (let k = 0; k < dim; k++) s += I[i * dim + k] * T[t * dim + k]; return s;
  }));
}

/** Zero-shot queries in both directions: each image ranks the texts, each text ranks the images. */
function queries(sim: number[][]): number[][] {
  return [...sim, ...sim[0].map((_, t) => sim.map((row) => row[t]))];
}
const argmax = (xs: number[]) => xs.reduce((b, x, j) => (x > xs[b] ? j : b), 0);

const fmtS = (s?: number) => (s === undefined ? '—' : s >= 1 ? `${s.toFixed(2)} s` : `${(s * 1000).toFixed(0)} ms`);
const fmtGB = (b?: number) => (b === undefined ? '—' : `${(b / 2 ** 30).toFixed(2)} GiB`);
const fmtX = (a?: number, b?: number) => (a === undefined || b === undefined ? '—' : `${(a / b).toFixed(2)}×`);


// ---- AltCLIP-m18 (npm run bench -- --m18) ----

const M18_BEGIN = '<!-- m18: written by `npm run bench -- --m18` -->';
const M18_END = '<!-- /m18 -->';

/** BENCHMARKS.md with its m18 section replaced by `section` (appended when absent). */
function withM18Section(md: string, section: string): string {
  const a = md.indexOf(M18_BEGIN), b = md.indexOf(M18_END);
  const block = `${M18_BEGIN}\n${section.trimEnd()}\n${M18_END}\n`;
  if (a >= 0 && b > a) return md.slice(0, a) + block + md.slice(b + M18_END.length).replace(/^\n/, '');
  return `${md.trimEnd()}\n\n${block}`;
}

/** The block of BENCHMARKS.md between `begin` and `end` (markers included), or ''. */
function markedSection(begin: string, end: string): string {
  const file = join(root, 'BENCHMARKS.md');
  if (!existsSync(file)) return '';
  const md = readFileSync(file, 'utf8');
  const a = md.indexOf(begin), b = md.indexOf(end);
  return a >= 0 && b > a ? md.slice(a, b + end.length) + '\n' : '';
}

/** The existing m18 section of BENCHMARKS.md, so that the main run's rewrite keeps it. */
const currentM18Section = (): string => markedSection(M18_BEGIN, M18_END);

// ---- the AVX-512 / VNNI section (in-process A/B with bench/ab_q8.ts, written by hand): kept by the main run ----

const AB_BEGIN = '<!-- avx512-ab: in-process A/B (bench/ab_q8.ts), written by hand; `npm run bench` keeps it -->';
const AB_END = '<!-- /avx512-ab -->';

const currentAbSection = (): string => markedSection(AB_BEGIN, AB_END);

// ---- sections written by other scripts (browser, search, server, m18, A/B, integrity): kept by the main run ----

const OTHERS = '<!-- sections below are written by other scripts (bench/web.ts, search.ts, serve.ts, --m18, ab_q8.ts, ...): `npm run bench` keeps them -->';

/** Everything from the OTHERS marker on (or the hand-kept A/B and m18 blocks of an older file). */
function otherSections(): string {
  const file = join(root, 'BENCHMARKS.md');
  if (!existsSync(file)) return '';
  const md = readFileSync(file, 'utf8');
  const at = md.indexOf(OTHERS);
  if (at >= 0) return '\n' + md.slice(at);
  return (currentAbSection() ? '\n' + currentAbSection() : '') + (currentM18Section() ? '\n' + currentM18Section() : '');
}

/** " (avx512f, avx512_vnni, avx_vnni)": the instruction sets onnxruntime's kernels pick from, as /proc/cpuinfo lists them. */
function cpuFlags(): string {
  try {
    const flags = new Set(readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1]?.trim().split(/\s+/) ?? []);
    const have = ['avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'amx_tile'].filter((f) => flags.has(f));
    return have.length ? ` (${have.join(', ')})` : '';
  } catch { return ''; }
}

/** Whether this python's torch calls OpenBLAS (Debian's reference BLAS is ~50x slower: no fair baseline). */
function torchHasOpenBlas(python: string): boolean {
  const r = spawnSync(python, ['-c', 'import torch; torch.ones(64, 64) @ torch.ones(64, 64); import os;'
    + ' print(any("openblas" in os.path.realpath(l.split()[-1]) for l in open("/proc/self/maps") if "blas" in l))'], { encoding: 'utf8' });
  return r.stdout.trim() === 'True';
}

async function runM18() {
  const started = new Date();
  const load0 = loadavg()[0];
  const seed = Number(opts.seed);
  const preset = 'BAAI/AltCLIP-m18' as const;
  const modelDir = ensurePresetCheckpoint(preset, defaultCheckpointDir(seed, preset), seed, (m) => process.stderr.write(m));
  // the baseline measured in the same run, process by process: our BAAI/AltCLIP (ViT-L/14 + XLM-R large)
  const baseDir = ensureCheckpoint(defaultCheckpointDir(seed), seed, (m) => process.stderr.write(m));
  const weightsBytes = statSync(join(modelDir, 'model.safetensors')).size;
  const baseBytes = statSync(join(baseDir, 'model.safetensors')).size;
  const outDir = join(cache, 'out-m18');
  mkdirSync(outDir, { recursive: true });
  const inputs = join(cache, 'inputs.safetensors');
  writeInputs(join(root, 'test', 'fixtures'), inputs);
  const m18Rows = rows.filter((r) => r === 'image1' || r === 'text1');
  if (!m18Rows.length) program.error('--m18 measures image1 and text1 (--only image1, text1, image or text)');
  const reps = opts.reps !== '0' ? opts.reps : '3';
  const common = ['--warmup', opts.warmup, '--reps', reps];

  interface System { key: string; label: string; args: (extra: string[]) => [string, string[], NodeJS.ProcessEnv]; bytes: number; graphs?: string }
  const ours = (model: 'm18' | 'altclip', dtype: string): System => {
    const graphs = join(cache, `graphs-${model === 'm18' ? 'm18-' : ''}${dtype}`);
    return { key: `${model}-${dtype}`, label: `${model === 'm18' ? 'm18' : 'AltCLIP'} ${dtype}`, graphs, bytes: model === 'm18' ? weightsBytes : baseBytes,
      args: (extra) => [process.execPath, ['--import', 'tsx', 'bench/ours_worker.ts', '--model', model === 'm18' ? modelDir : baseDir, '--inputs', inputs,
        '--threads', opts.threads, '--dtype', dtype, '--graph-cache', graphs, ...extra], {}] };
  };
  const systems: System[] = dtypes.flatMap((d) => [ours('altclip', d), ours('m18', d)]);
  const python = opts.torch ? findPython() : null;
  let torchNote = '';
  if (python && !torchHasOpenBlas(python)) {
    torchNote = 'PyTorch not measured: its torch calls the reference BLAS here (no libopenblas0-pthread), ~50× slower than OpenBLAS, no fair baseline.';
    log(`  ${torchNote}`);
  } else if (python) {
    const setting = process.argv.includes('--torch-grid') ? opts.torchGrid.split(',')[0]! : '2x1';
    const [t, b] = setting.split('x');
    systems.push({ key: 'torch', label: `m18 torch fp32 (${setting})`, bytes: weightsBytes,
      args: (extra) => [python, ['bench/torch_baseline.py', 'bench', '--model', modelDir, '--inputs', inputs, '--threads', t!, ...extra],
        { ...TORCH_MALLOC_ENV, OPENBLAS_NUM_THREADS: b, OMP_NUM_THREADS: t }] });
  }

  // cold loads (empty graph cache: builds, and for q8 quantizes, the graphs), then the timed processes,
  // alternating m18 and the baseline (per row the better of 2 processes counts)
  const cold: Record<string, RunResult | null> = {};
  for (const sys of systems) {
    if (!sys.graphs) continue;
    rmSync(sys.graphs, { recursive: true, force: true });
    log(`  ${sys.label}: cold load ...`);
    cold[sys.key] = runJson<RunResult>(...sys.args([]), `${sys.label} cold load`);
  }
  const best: Record<string, RunResult> = {};
  const loads: Record<string, number[]> = {};
  for (const pass of [0, 1]) for (const sys of systems) {
    log(`  ${sys.label}: warm load + ${m18Rows.join(', ')}${pass ? ' (second process)' : ''} ...`);
    const r = runJson<RunResult>(...sys.args(['--rows', m18Rows.join(','), ...(pass === 0 ? ['--out', join(outDir, `${sys.key}.safetensors`)] : []), ...common]), sys.label);
    if (!r) continue;
    (loads[sys.key] ??= []).push(r.load_s);
    const k = best[sys.key];
    if (!k) { best[sys.key] = r; continue; }
    for (const row of m18Rows) if (r.rows[row] && (!k.rows[row] || r.rows[row]!.median_s < k.rows[row]!.median_s)) k.rows[row] = r.rows[row];
    k.peak_rss_bytes = Math.max(k.peak_rss_bytes, r.peak_rss_bytes);
  }
  const load1 = loadavg()[0];

  const feats = (f: string) => (existsSync(f) ? readSafetensors(f) : null);
  const agreement: string[] = [];
  const cmp = (a: string, b: string, what: string) => {
    const fa = feats(join(outDir, `${a}.safetensors`)), fb = feats(join(outDir, `${b}.safetensors`));
    for (const r of m18Rows) {
      const x = fa?.get(r), y = fb?.get(r);
      if (!x || !y) continue;
      const { maxAbs, minCos } = compare(x.data as Float32Array, y.data as Float32Array, x.shape[1]!);
      agreement.push(`| ${what} | ${r} | ${x.shape[1]} | ${maxAbs.toExponential(2)} | ${minCos.toFixed(6)} |`);
    }
  };
  if (best.torch) cmp('m18-fp32', 'torch', 'm18: ours fp32 vs torch fp32');
  cmp('m18-q8', 'm18-fp32', 'm18: ours q8 vs ours fp32');

  const m = machine();
  const pairs = dtypes.map((d) => [`altclip-${d}`, `m18-${d}`, d] as const);
  const head = ['measure', ...pairs.flatMap(([, , d]) => [`AltCLIP ${d} (baseline)`, `m18 ${d}`, 'm18 / AltCLIP']), ...(best.torch ? ['m18 torch fp32'] : [])];
  const table = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  const row = (label: string, get: (key: string) => number | undefined, fmt: (x?: number) => string) =>
    table.push(`| ${[label, ...pairs.flatMap(([a, b]) => [fmt(get(a)), fmt(get(b)), fmtX(get(b), get(a))]), ...(best.torch ? [fmt(get('torch'))] : [])].join(' | ')} |`);
  row('load, cold (empty graph cache)', (k) => cold[k]?.load_s, fmtS);
  row('load, warm (median of 2)', (k) => (loads[k]?.length ? loads[k]!.reduce((x, y) => x + y, 0) / loads[k]!.length : undefined), fmtS);
  for (const r of m18Rows) row(ROW_LABEL[r], (k) => best[k]?.rows[r]?.median_s, fmtS);
  row('peak RSS (warm load + all rows)', (k) => best[k]?.peak_rss_bytes, fmtGB);
  row('peak RSS, cold load', (k) => cold[k]?.peak_rss_bytes, fmtGB);
  row('weights file', (k) => (k === 'torch' || k.startsWith('m18') ? weightsBytes : baseBytes), fmtGB);

  const section = [
    '## AltCLIP-m18 (ViT-H/14 + XLM-R large), full size',
    '',
    `Run ${started.toISOString().replace(/\.\d+Z$/, 'Z')} with \`npm run bench -- ${process.argv.slice(2).join(' ')}\` on **${m.cpu}**${cpuFlags()}, ${m.cores} CPU(s); Node ${process.version}.`,
    `**The machine was shared** with other helpers' builds, tests and benchmarks during this run (load average ${load0.toFixed(2)} at the start,`
      + ` ${load1.toFixed(2)} at the end, on ${m.cores} CPUs): absolute times are inflated and noisy; the m18 / AltCLIP ratios compare`
      + ' processes that alternated (AltCLIP, m18, AltCLIP, m18, ...) so that a slow phase falls on both.',
    '',
    `Model: \`configPreset('BAAI/AltCLIP-m18')\` (src/config_presets.ts): ViT-H/14 vision tower (hidden 1280, 32 layers, 16 heads of 80, MLP 5120,`
      + ` exact GELU), XLM-R large text tower, 1024-d projections; random weights from \`bench/generate_checkpoint.ts --preset BAAI/AltCLIP-m18\``
      + ` (seed ${seed}), ${(weightsBytes / 1e9).toFixed(2)} GB of F32 safetensors (1.19e9 parameters; the hub repository's weights: 4.78 GB).`
      + ` Baseline: BAAI/AltCLIP's shapes (ViT-L/14 + XLM-R large, 864M parameters, ${(baseBytes / 1e9).toFixed(2)} GB), same generator and seed.`,
    `Inputs: one fixture image (cat, golden pixel values) and one 8-token prompt. Times: median of ${reps} calls after ${opts.warmup} warm-up,`
      + ` the better of 2 processes; ${opts.threads} intra-op thread(s). Peak RSS: process maximum (getrusage), memory-mapped weights included;`
      + ' one such process at a time.',
    ...(torchNote ? ['', torchNote] : []),
    '',
    ...table,
    '',
    ...(agreement.length ? ['Agreement on these inputs (features before normalisation):', '', '| comparison | row | dim | max abs diff | min cosine |', '|---|---|---|---|---|', ...agreement, ''] : []),
    'Reproduce: `npm run bench -- --m18` (generates the 4.8 GB m18 and 3.5 GB AltCLIP checkpoints into bench/.cache/ once;',
    '`--dtype fp32` or `q8` for one dtype, `--reps N` calls per row, `--no-torch` skips PyTorch, which runs only where torch uses OpenBLAS).',
    '',
  ].join('\n');
  process.stdout.write('\n' + section);
  writeFileSync(join(cache, 'last-run-m18.json'), JSON.stringify({ started, machine: m, cold, best, loads }, null, 1));
  if (opts.write !== false) {
    const file = join(root, 'BENCHMARKS.md');
    writeFileSync(file, withM18Section(existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n', section));
    log('  wrote the m18 section of BENCHMARKS.md');
  }
}

// ---- main ----

async function main() {
  if (opts.m18) return runM18();
  const started = new Date();
  const load0 = loadavg()[0];
  const seed = Number(opts.seed);
  const modelDir = ensureCheckpoint(defaultCheckpointDir(seed), seed, (m) => process.stderr.write(m));
  const weightsBytes = statSync(join(modelDir, 'model.safetensors')).size;
  const outDir = join(cache, 'out');
  mkdirSync(outDir, { recursive: true });
  const inputs = join(cache, 'inputs.safetensors');
  const { texts } = writeInputs(join(root, 'test', 'fixtures'), inputs);
  const allInputs = join(cache, 'inputs-all.safetensors');
  const allCounts = writeAllInputs(join(root, 'test', 'fixtures'), allInputs);
  const common = ['--warmup', opts.warmup, '--reps', opts.reps];

  // Which processes run: the PyTorch baseline gets one per thread setting (per row the fastest setting
  // is the baseline), ours two per dtype (per row the better one counts). The timed processes of both
  // sides are interleaved (torch, ours, torch, ours, ...), so that a slow phase of this shared machine
  // falls on both sides rather than on whichever ran last.
  const torchRuns: TorchResult[] = [];
  const python = opts.torch ? findPython() : null;
  if (opts.torch && !python) log('  PyTorch baseline skipped: no python3 that imports torch (apt-get install python3-torch)');
  if (python && rows.length && !torchHasOpenBlas(python)) {
    throw new Error(`${python}'s torch does not call OpenBLAS (Debian's reference BLAS is ~50x slower: no fair baseline): `
      + 'apt-get install libopenblas0-pthread, or run with --no-torch');
  }
  if (python && rows.length) {
    const verify = runJson<{ ok: boolean; worst_max_abs_diff: number }>(python, ['bench/torch_baseline.py', 'verify'], { OPENBLAS_NUM_THREADS: '1' }, 'torch baseline verify');
    if (!verify?.ok) throw new Error(`bench/torch_baseline.py does not reproduce the tiny fixtures' goldens: ${JSON.stringify(verify)}`);
    log(`  torch baseline matches the tiny goldens (max abs diff ${verify.worst_max_abs_diff.toExponential(1)})`);
  }
  const torchJobs = python && rows.length ? opts.torchGrid.split(',').map((setting) => () => {
    const [t, b] = setting.split('x');
    log(`  torch: ${t} torch thread(s), ${b} OpenBLAS thread(s): load + ${rows.join(', ')} ...`);
    const r = runJson<TorchResult>(python, ['bench/torch_baseline.py', 'bench', '--model', modelDir, '--inputs', inputs,
      '--out', join(outDir, `torch-${setting}.safetensors`), '--threads', t, '--rows', rows.join(','), ...common],
      { ...TORCH_MALLOC_ENV, OPENBLAS_NUM_THREADS: b, OMP_NUM_THREADS: t }, `torch ${setting}`);
    if (r) {
      torchRuns.push({ ...r, setting });
      const removed = Object.entries(r.openblas?.removed_env ?? {}).map(([k, v]) => `${k}=${v}`).join(', ');
      log(`    OpenBLAS kernel: ${r.openblas?.core ?? 'none (not OpenBLAS)'}${removed ? ` (removed for torch: ${removed})` : ''}`);
      if (r.weights_file_mapped) log('    WARNING: torch\'s weights view a mmap of the checkpoint (slower forward passes): not a fair baseline');
    }
  }) : [];

  // Our model, first the loads per dtype: a cold load (empty graph cache), the cachePrepacked and
  // main-thread variants; warm loads are single samples of a noisy quantity, each row the median of LOADS processes.
  const ours: Record<string, { cold?: RunResult | null; warm?: RunResult | null }> = {};
  const LOADS = 3;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const warmLoad: Record<string, { warm?: number; prepacked?: number; mainThread?: number }> = {};
  const loadMedian = (args: string[], what: string, first?: RunResult | null) => {
    const xs = first ? [first.load_s] : [];
    while (xs.length < LOADS) {
      const r = runJson<RunResult>(process.execPath, args, {}, what);
      if (!r) return undefined;
      xs.push(r.load_s);
    }
    return median(xs);
  };
  const profiles: ProfileResult[] = [];
  const haveModel = existsSync(MODEL_MODULE);
  if (!haveModel) log(`  our model skipped: ${MODEL_MODULE} does not exist yet`);
  const ourDtypes = haveModel ? dtypes : [];
  const graphsOf = (dtype: string) => join(cache, `graphs-${dtype}`);
  const workerOf = (dtype: string) => ['--import', 'tsx', 'bench/ours_worker.ts', '--model', modelDir, '--inputs', inputs,
    '--threads', opts.threads, '--dtype', dtype, '--graph-cache', graphsOf(dtype)];
  for (const dtype of ourDtypes) {
    const worker = workerOf(dtype);
    ours[dtype] = {};
    if (!measureLoad) continue;
    rmSync(graphsOf(dtype), { recursive: true, force: true });
    log(`  ours ${dtype}: cold load ...`);
    ours[dtype].cold = runJson<RunResult>(process.execPath, worker, {}, `ours ${dtype} cold load`);
    // cachePrepacked: the first load writes onnxruntime's packed weights, the second is timed
    log(`  ours ${dtype}: warm load with cachePrepacked ...`);
    runJson<RunResult>(process.execPath, [...worker, '--cache-prepacked'], {}, `ours ${dtype} prepacked cache`);
    warmLoad[dtype] = { prepacked: loadMedian([...worker, '--cache-prepacked'], `ours ${dtype} prepacked load`) };
    log(`  ours ${dtype}: warm load with the sessions on the main thread (workerThreads: false) ...`);
    warmLoad[dtype].mainThread = loadMedian([...worker, '--no-worker-threads'], `ours ${dtype} main-thread load`);
  }

  // The timed rows: two processes per dtype (the first one also writes the features), alternating
  // dtypes, interleaved with torch's processes.
  const ourJobs: (() => void)[] = [];
  const extraWarmLoads: Record<string, number | undefined> = {};
  for (const pass of [0, 1]) for (const dtype of ourDtypes) ourJobs.push(() => {
    log(`  ours ${dtype}: warm load + ${rows.join(', ') || 'nothing else'}${pass ? ' (second process)' : ''} ...`);
    const out = pass === 0 ? ['--out', join(outDir, `ours-${dtype}.safetensors`)] : [];
    const r = runJson<RunResult>(process.execPath, [...workerOf(dtype), '--rows', rows.join(','), ...out, ...common], {}, `ours ${dtype}`);
    const kept = ours[dtype].warm;
    if (!kept) { ours[dtype].warm = r; return; }
    for (const row of rows) {
      const a = kept.rows[row], b = r?.rows[row];
      if (a && b && b.median_s < a.median_s) kept.rows[row] = b;
    }
    if (r) kept.peak_rss_bytes = Math.max(kept.peak_rss_bytes, r.peak_rss_bytes);
    extraWarmLoads[dtype] = r?.load_s;
  });
  for (let i = 0; i < Math.max(torchJobs.length, ourJobs.length); i++) {
    torchJobs[i]?.();
    ourJobs[i]?.();
  }
  const slowBlas = torchRuns.length > 0 && !torchRuns[0].blas.some((p) => p.includes('openblas'));
  if (slowBlas) log('  WARNING: torch is not using OpenBLAS (reference BLAS is ~50x slower): apt-get install libopenblas0-pthread');
  const torchBest: Partial<Record<Row, { s: number; setting: string }>> = {};
  for (const r of rows) for (const run of torchRuns) {
    const m = run.rows[r]?.median_s;
    if (m !== undefined && (torchBest[r] === undefined || m < torchBest[r]!.s)) torchBest[r] = { s: m, setting: run.setting };
  }

  // Untimed: warm loads (the timed processes' loads + one more), q8 vs fp32 on every fixture input, profiles.
  for (const dtype of ourDtypes) {
    const worker = workerOf(dtype);
    const warm = ours[dtype].warm;
    if (measureLoad && warm) {
      const loads = [warm.load_s, ...(extraWarmLoads[dtype] !== undefined ? [extraWarmLoads[dtype]!] : [])];
      while (loads.length < LOADS) {
        const r = runJson<RunResult>(process.execPath, worker, {}, `ours ${dtype} warm load`);
        if (!r) break;
        loads.push(r.load_s);
      }
      if (loads.length === LOADS) (warmLoad[dtype] ??= {}).warm = median(loads);
    }
    if (dtypes.includes('q8') && dtypes.includes('fp32')) {
      log(`  ours ${dtype}: features of every fixture input (${allCounts.images} images, ${allCounts.texts} texts; untimed) ...`);
      runJson<RunResult>(process.execPath, [...worker, '--all-inputs', allInputs, '--all-out', join(outDir, `ours-${dtype}-all.safetensors`)], {}, `ours ${dtype} all inputs`);
    }
    if (!opts.profile || !warm) continue;
    const towers: [string, number][] = [];
    if (rows.some((r) => r.startsWith('image'))) towers.push(['vision', 1]);
    if (rows.some((r) => r.startsWith('text'))) towers.push(['text', 32]);
    for (const [tower, batch] of towers) {
      log(`  ours ${dtype}: profiling the ${tower} graph, batch ${batch} ...`);
      const p = runJson<ProfileResult>(process.execPath, ['--import', 'tsx', 'bench/profile.ts', '--graph-cache', graphsOf(dtype), '--tower', tower,
        '--dtype', dtype, '--inputs', inputs, '--batch', String(batch), '--threads', opts.threads], {}, `profile ${dtype} ${tower}`);
      if (p) profiles.push(p);
    }
  }

  // q8 on the tiny fixture checkpoints, against transformers' fp32 goldens.
  const tiny = haveModel && dtypes.includes('q8')
    ? runJson<{ min_cos_text: number; min_cos_image: number; top1_agree: number; top1_total: number }>(process.execPath,
      ['--import', 'tsx', 'bench/q8_tiny.ts', '--graph-cache', join(cache, 'graphs-tiny'), '--threads', opts.threads], {}, 'q8 on the tiny fixtures')
    : null;

  // Agreement: ours fp32 vs torch (same inputs), ours q8 vs ours fp32 (+ zero-shot top-1 agreement).
  const feats = (f: string) => (existsSync(f) ? readSafetensors(f) : null);
  const torchF = torchRuns.length ? feats(join(outDir, `torch-${torchRuns[0].setting}.safetensors`)) : null;
  const oursF: Record<string, ReturnType<typeof feats>> = {};
  for (const d of Object.keys(ours)) oursF[d] = ours[d].warm ? feats(join(outDir, `ours-${d}.safetensors`)) : null;
  const agreement: string[] = [];
  const cmpRows = (a: ReturnType<typeof feats>, b: ReturnType<typeof feats>, what: string): number | undefined => {
    if (!a || !b) return undefined;
    let worst: number | undefined;
    for (const r of rows) {
      const x = a.get(r), y = b.get(r);
      if (!x || !y) continue;
      const { maxAbs, minCos } = compare(x.data as Float32Array, y.data as Float32Array, x.shape[1]);
      agreement.push(`| ${what} | ${r} | ${maxAbs.toExponential(2)} | ${minCos.toFixed(6)} |`);
      worst = Math.min(worst ?? 1, minCos);
    }
    return worst;
  };
  cmpRows(oursF.fp32, torchF, 'ours fp32 vs torch fp32');
  const q8Cos = cmpRows(oursF.q8, oursF.fp32, 'ours q8 vs ours fp32');
  let ranking = '';
  const f32 = oursF.fp32, q8 = oursF.q8;
  if (f32?.get('image8') && f32.get('text32') && q8?.get('image8') && q8.get('text32')) {
    const dim = f32.get('image8')!.shape[1];
    const qa = queries(cosines(f32.get('image8')!.data as Float32Array, f32.get('text32')!.data as Float32Array, dim));
    const qb = queries(cosines(q8.get('image8')!.data as Float32Array, q8.get('text32')!.data as Float32Array, dim));
    const flips = qa.map((q, k) => [q, argmax(q), argmax(qb[k])] as const).filter(([, a, b]) => a !== b);
    // How close the fp32 similarities of the two choices were where q8 picked differently, next to the
    // typical fp32 gap between first and second place (random weights give close similarities).
    const gaps = qa.map((q) => { const s = [...q].sort((x, y) => y - x); return s[0] - s[1]; }).sort((x, y) => x - y);
    ranking = `Zero-shot top-1 agreement, q8 vs fp32 (8 images × 32 texts, both directions): ${qa.length - flips.length}/${qa.length}`
      + (flips.length ? `; where they differ, the fp32 cosines of the two choices are at most ${Math.max(...flips.map(([q, a, b]) => q[a] - q[b])).toFixed(4)} apart`
        + ` (median first-vs-second gap over all queries: ${gaps[gaps.length >> 1].toFixed(4)})` : '') + '.';
  }

  // q8 vs fp32 over every fixture input (not only the timed ones).
  let allLine = '';
  let allCos: number | undefined;
  const fAll = feats(join(outDir, 'ours-fp32-all.safetensors')), qAll = feats(join(outDir, 'ours-q8-all.safetensors'));
  if (dtypes.includes('q8') && dtypes.includes('fp32') && fAll && qAll) {
    const dim = fAll.get('image')!.shape[1];
    const ci = compare(qAll.get('image')!.data as Float32Array, fAll.get('image')!.data as Float32Array, dim).minCos;
    const ct = compare(qAll.get('text')!.data as Float32Array, fAll.get('text')!.data as Float32Array, dim).minCos;
    allCos = Math.min(ci, ct);
    const qa = queries(cosines(fAll.get('image')!.data as Float32Array, fAll.get('text')!.data as Float32Array, dim));
    const qb = queries(cosines(qAll.get('image')!.data as Float32Array, qAll.get('text')!.data as Float32Array, dim));
    const same = qa.filter((q, k) => argmax(q) === argmax(qb[k]!)).length;
    allLine = `Every fixture input (${allCounts.images} images of pixel_values.safetensors, ${allCounts.texts} single-text tokenizer cases, cut to 512 tokens), q8 vs fp32:`
      + ` lowest cosine ${ci.toFixed(6)} (image features), ${ct.toFixed(6)} (text features); zero-shot top-1 agreement ${same}/${qa.length}.`;
  }

  // ---- table ----
  const m = machine();
  const has = (d: string) => ours[d]?.warm !== undefined;
  const o = (d: string, r: Row) => ours[d]?.warm?.rows[r]?.median_s;
  const header = ['measure', 'torch fp32 (best setting)', ...(has('fp32') ? ['ours fp32', 'fp32 / torch'] : []), ...(has('q8') ? ['ours q8', 'q8 / torch'] : [])];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  const line = (cells: string[]) => lines.push(`| ${cells.join(' | ')} |`);
  const cmpCells = (d: string, mine?: number, base?: number) => (has(d) ? [fmtS(mine), fmtX(mine, base)] : []);
  if (measureLoad) {
    const tl = torchRuns.length ? Math.min(...torchRuns.map((t) => t.load_s)) : undefined;
    line(['load, cold (empty graph cache)', fmtS(tl), ...cmpCells('fp32', ours.fp32?.cold?.load_s, tl), ...cmpCells('q8', ours.q8?.cold?.load_s, tl)]);
    line([`load, warm (graphs cached; median of ${LOADS})`, fmtS(tl), ...cmpCells('fp32', warmLoad.fp32?.warm, tl), ...cmpCells('q8', warmLoad.q8?.warm, tl)]);
    line([`load, warm with \`cachePrepacked: true\` (median of ${LOADS})`, fmtS(tl), ...cmpCells('fp32', warmLoad.fp32?.prepacked, tl), ...cmpCells('q8', warmLoad.q8?.prepacked, tl)]);
    line([`load, warm, sessions on the main thread (\`workerThreads: false\`; median of ${LOADS})`, fmtS(tl), ...cmpCells('fp32', warmLoad.fp32?.mainThread, tl), ...cmpCells('q8', warmLoad.q8?.mainThread, tl)]);
  }
  for (const r of rows) {
    const b = torchBest[r];
    line([ROW_LABEL[r], b ? `${fmtS(b.s)} (${b.setting})` : '—', ...cmpCells('fp32', o('fp32', r), b?.s), ...cmpCells('q8', o('q8', r), b?.s)]);
  }
  const tRss = torchRuns.length ? Math.min(...torchRuns.map((t) => t.peak_rss_bytes)) : undefined;
  const rssCells = (d: string) => (has(d) ? [fmtGB(ours[d]?.warm?.peak_rss_bytes), ours[d]?.warm ? `${(ours[d]!.warm!.peak_rss_bytes / weightsBytes).toFixed(2)}× weights` : '—'] : []);
  line(['peak RSS', tRss ? `${fmtGB(tRss)} (${(tRss / weightsBytes).toFixed(2)}× weights)` : '—', ...rssCells('fp32'), ...rssCells('q8')]);

  // The targets of issue 7, checked on this run's numbers.
  const targets: string[] = [];
  const check = (what: string, value: number | undefined, limit: number, fmt: (v: number) => string, atLeast = false) => {
    if (value === undefined || Number.isNaN(value)) return;
    const ok = atLeast ? value >= limit : value <= limit;
    targets.push(`| ${what} | ${fmt(value)} | ${atLeast ? '≥' : '≤'} ${fmt(limit)} | ${ok ? 'met' : '**not met**'} |`);
  };
  const ratio = (v: number) => `${v.toFixed(2)}×`;
  const div = (a?: number, b?: number) => (a === undefined || b === undefined ? undefined : a / b);
  for (const r of rows) check(`fp32 ${ROW_LABEL[r]}, vs torch`, div(o('fp32', r), torchBest[r]?.s), 0.8, ratio);
  if (rows.includes('image8')) check('q8 getImageFeatures batch 8, vs torch fp32', div(o('q8', 'image8'), torchBest.image8?.s), 0.35, ratio);
  const q8Cosines = [q8Cos, allCos, tiny?.min_cos_text, tiny?.min_cos_image].filter((c): c is number => c !== undefined);
  if (q8Cosines.length) check('q8 vs fp32 cosine, lowest (benchmark inputs, every fixture input; tiny fixtures vs goldens)', Math.min(...q8Cosines), 0.99, (v) => v.toFixed(4), true);
  if (measureLoad) for (const d of ['fp32', 'q8']) check(`warm load ${d}`, warmLoad[d]?.warm, 3, fmtS);
  if (measureLoad) for (const d of ['fp32', 'q8']) check(`warm load ${d} with cachePrepacked`, warmLoad[d]?.prepacked, 3, fmtS);
  check('peak RSS fp32, vs weights size', div(ours.fp32?.warm?.peak_rss_bytes, weightsBytes), 1.2, ratio);
  check('peak RSS q8, vs weights size', div(ours.q8?.warm?.peak_rss_bytes, weightsBytes), 0.5, ratio);

  const grid = torchRuns.length ? [
    `| torch threads × OpenBLAS threads | load | ${rows.join(' | ')} | peak RSS |`, `|---|---|${rows.map(() => '---').join('|')}|---|`,
    ...torchRuns.map((t) => `| ${t.setting} | ${fmtS(t.load_s)} | ${rows.map((r) => fmtS(t.rows[r]?.median_s)).join(' | ')} | ${fmtGB(t.peak_rss_bytes)} |`),
  ] : [];
  const cores = Number(m.cores) || availableParallelism();
  const flopsPerCycle = fp32FlopsPerCycle();
  const peak = Number(opts.peakGflops ?? cores * flopsPerCycle * 3.7);
  const prof = profiles.length ? [
    `Where the time goes (ONNX Runtime profiler, one run after a warm-up, ${opts.threads} thread(s); GEMM = MatMul/Gemm/Conv and int8`,
    `matmul kernels; GFLOP/s = the tower's matrix-product FLOPs / GEMM kernel time, fp32-equivalent for q8; peak = ${peak.toFixed(0)} GFLOP/s`,
    opts.peakGflops ? 'given by --peak-gflops):' : `assumed: ${cores} cores × ${flopsPerCycle} fp32 FLOP/cycle × 3.7 GHz):`, '',
    '| graph | run | GEMM share | GEMM kernels | GEMM GFLOP/s | of fp32 peak | largest other ops |', '|---|---|---|---|---|---|---|',
    ...profiles.map((p) => `| ${p.tower} ${p.dtype}, batch ${p.batch}×${p.seq} tokens | ${fmtS(p.run_ms / 1000)} | ${(100 * p.gemm_ms / p.kernel_ms).toFixed(1)}% | ${
      p.ops.filter((o) => GEMM_OPS.has(o.op) && o.share >= 0.001).map((o) => `${o.op} ${(100 * o.share).toFixed(1)}%`).join(', ')} | ${p.gemm_gflops.toFixed(0)} | ${(100 * p.gemm_gflops / peak).toFixed(0)}% | ${
      p.ops.filter((o) => !GEMM_OPS.has(o.op)).slice(0, 4).map((o) => `${o.op} ${(100 * o.share).toFixed(1)}%`).join(', ')} |`),
    '',
  ] : [];
  const load1 = loadavg()[0];
  const versions = [
    `Node ${process.version}`,
    `onnxruntime-node ${JSON.parse(readFileSync(join(root, 'node_modules', 'onnxruntime-node', 'package.json'), 'utf8')).version}`,
    torchRuns[0] ? `PyTorch ${torchRuns[0].torch} (BLAS: ${torchRuns[0].blas.map((p) => p.split('/').pop()).join(', ')}; OpenBLAS kernel ${
      torchRuns[0].openblas?.core ?? 'none'}, chosen by OpenBLAS itself: OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset for torch; weights in memory, not mmap views)` : 'PyTorch: not measured',
  ].join(', ');

  const md = [
    '# Benchmarks',
    '',
    `Run ${started.toISOString().replace(/\.\d+Z$/, 'Z')} with \`npm run bench${process.argv.slice(2).length ? ' -- ' + process.argv.slice(2).join(' ') : ''}\` on **${m.cpu}**, ${m.cores} CPU(s) (\`lscpu\`); ${versions}.`,
    ...(slowBlas ? ['', '**WARNING: PyTorch ran on a non-OpenBLAS BLAS (Debian reference BLAS?); its times are not a fair baseline.**', ''] : []),
    `Load average (1 min) ${load0.toFixed(2)} at the start, ${load1.toFixed(2)} at the end: the machine is shared, so expect ±10–20% noise, more for PyTorch (its OpenBLAS threads lose more to other load than ONNX Runtime's pool: compare runs by their load averages).`,
    '',
    `Model: full-size AltCLIP with BAAI/AltCLIP's config (XLM-R large text tower, ViT-L/14 at 224), random weights`,
    `(\`bench/generate_checkpoint.ts\`, seed ${seed}), ${(weightsBytes / 1e9).toFixed(2)} GB of F32 safetensors. Inputs: ${rows.some((r) => r.startsWith('image')) ? '8 fixture images (golden pixel values)' : ''}${rows.some((r) => r.startsWith('text')) ? `${rows.some((r) => r.startsWith('image')) ? ', ' : ''}32 fixture prompts of 8–16 tokens (golden token ids, right-padded), e.g. "${texts[0]}"` : ''}.`,
    `Times are medians after ${opts.warmup} warm-up run(s); ours with ${opts.threads} intra-op thread(s), the better of 2 processes per row. Ratios < 1 mean we are faster.`,
    `The timed processes of both sides alternate (torch setting, ours, torch setting, ours, ...), so that a slow phase of the machine falls on both.`,
    `PyTorch runs eagerly under \`torch.inference_mode()\` (bench/torch_baseline.py, checked against the tiny fixtures' goldens);`,
    `each torch thread setting runs in its own process and, per row, the fastest one is the baseline. Its processes run with`,
    `glibc malloc kept from returning big blocks to the OS (${Object.entries(TORCH_MALLOC_ENV).map(([k, v]) => `${k}=${v}`).join(' ')}; bench/torch_env.ts):`,
    `with glibc's defaults every activation is a fresh mmap whose pages fault in again, which made torch's vision tower 2–5× slower on this VM.`,
    '',
    ...lines,
    '',
    ...(targets.length ? ['Targets of issue 7 on this run:', '', '| target | measured | wanted | |', '|---|---|---|---|', ...targets, ''] : []),
    ...(grid.length ? ['PyTorch by thread setting (oversubscribing 2 cores — torch and OpenBLAS pools both at 2 — is expected to be the slowest):', '', ...grid, ''] : []),
    ...prof,
    ...(agreement.length ? ['Numerical agreement on the benchmark inputs (features before normalisation; cosine = the lowest over the batch):', '',
      '| comparison | row | max abs diff | min cosine |', '|---|---|---|---|', ...agreement, ''] : []),
    ...(ranking ? [ranking, ''] : []),
    ...(allLine ? [allLine, ''] : []),
    ...(tiny ? [`q8 on the tiny fixture checkpoints (tiny-altclip, tiny-altclip-b; every golden combo) vs transformers' fp32 goldens: lowest cosine`,
      `${tiny.min_cos_text.toFixed(4)} (text features), ${tiny.min_cos_image.toFixed(4)} (image features); zero-shot top-1 agreement ${tiny.top1_agree}/${tiny.top1_total}.`, ''] : []),
    'Cold load builds (and for q8 quantizes) the graphs into an empty graph cache; warm load finds them cached. In both, the',
    'checkpoint file is usually in the OS page cache already (it was just read), so neither includes reading 3.4 GB from disk.',
    'Peak RSS is the process maximum (getrusage) of the process that loaded the model and ran all rows, memory-mapped weights included.',
    'With `cachePrepacked: true` the graph cache also holds onnxruntime\'s optimized graph with its GEMM weights already packed (about',
    'the weights\' size again on disk), written by a first load; the row shows the load after it.',
    'Sessions run in worker threads by default, one per graph, so the two towers load (and onnxruntime packs their weights)',
    'at the same time; the `workerThreads: false` row loads them one after the other on the main thread, as onnxruntime-node does.',
    '',
    'Reproduce: `apt-get install python3-torch python3-numpy libopenblas0-pthread` (the bench needs OpenBLAS: without',
    'libopenblas0-pthread Debian\'s torch runs on the reference BLAS, ~50× slower, and the bench refuses to measure it; torch',
    'runs with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed, so OpenBLAS picks its own kernel), then `npm run bench` (the checkpoint is generated once into bench/.cache/, ~35 s);',
    '`npm run bench -- --help` lists the subsets and settings.',
    '',
  ].join('\n');
  process.stdout.write('\n' + md);
  writeFileSync(join(cache, 'last-run.json'), JSON.stringify({ started, machine: m, torch: torchRuns, ours, profiles, tiny }, null, 1));
  log(`  raw results (every timed run): ${join(cache, 'last-run.json')}`);
  if (opts.write ?? !only.length) {
    writeFileSync(join(root, 'BENCHMARKS.md'), md + otherSections());
    log('  wrote BENCHMARKS.md');
  }
}

main().catch((e) => { console.error(e instanceof Error ? e.message : e); process.exit(1); });

/** fp32 FLOP per cycle per core: two FMA pipes x vector width x 2. Zen 5 (cpu family 26) runs AVX-512 at full
 * 512-bit width (2 x 16 x 2 = 64); Zen 4 splits 512-bit ops into two 256-bit halves, and AVX2-only machines have
 * 256-bit FMAs (2 x 8 x 2 = 32). */
function fp32FlopsPerCycle(): number {
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const family = Number(/^cpu family\s*:\s*(\d+)/m.exec(info)?.[1]);
    const avx512 = /^flags\s*:.*\bavx512f\b/m.test(info);
    return family === 26 && avx512 ? 64 : 32;
  } catch { return 32; }
}
