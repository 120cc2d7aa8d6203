// Benchmark of `altclip index` / `altclip search` (issue 14). Each part can run alone:
//
//   node --import tsx bench/search.ts [--parts index,rss,scan,search,oneshot] [--images 200] [--rss-images 200,2000]
//        [--vectors 1000000] [--threads 2] [--queries 50]
//
//   index    images/s of ImageIndex.sync (decode + resize + model + store) on N real JPEG/PNG files of
//            mixed sizes, fp32 and q8, against bench/search_torch_loop.py (PIL + CLIPImageProcessor's steps
//            + torch get_image_features, batch 8, fp32) in the same run, processes interleaved; torch
//            takes the best of its thread settings. Full-size random checkpoint (bench/generate_checkpoint.ts).
//   rss      peak RSS of an indexing process at 200 and 2000 images (tiny fixture model: the store
//            and pipeline, not the weights, are what could grow with the number of images).
//   scan     exact-scan latency by row count (what sets DEFAULT_ANN.minRows).
//   search   warm ImageIndex.search(text) on N stored 768-dim clustered vectors (IVF_PQ + refine),
//            p50/p95 end to end and store-only, recall@10 against an exact scan.
//   oneshot  wall time of a whole `altclip search` process (warm graph cache) on the full-size model.
//
// Results go to bench/.cache/search-last.json and are printed as Markdown rows for BENCHMARKS.md.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Arrow from 'apache-arrow';
import { defaultCheckpointDir } from './generate_checkpoint.js';
import { TORCH_MALLOC_ENV } from './torch_env.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.join(here, '..');
const CACHE = path.join(here, '.cache');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const TINY = path.join(FIXTURES, 'models', 'tiny-altclip');

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}
const log = (s: string) => process.stderr.write(`${s}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

// ---------------------------------------------------------------------------------------------
// Worker modes (run as child processes, print one JSON line)

async function workerIndex(): Promise<void> {
  const { ImageIndex } = await import('../src/search/index.js');
  const { loadAltCLIP } = await import('../src/tasks/pipeline.js');
  const list = fs.readFileSync(arg('list', ''), 'utf8').split('\n').filter(Boolean);
  const dtype = arg('dtype', 'fp32') as 'fp32' | 'q8';
  const model = arg('model', TINY);
  const threads = Number(arg('threads', String(os.availableParallelism())));
  const t0 = performance.now();
  const clip = await loadAltCLIP(model, { dtype, threads, parts: 'vision', graphCacheDir: arg('graph-cache', path.join(CACHE, `graphs-search-${dtype}`)) });
  const loadS = (performance.now() - t0) / 1000;
  const db = arg('db', '');
  fs.rmSync(db, { recursive: true, force: true });
  const index = await ImageIndex.open(db, { clip, batchSize: 8 });
  const t1 = performance.now();
  const r = await index.sync(list);
  const seconds = (performance.now() - t1) / 1000;
  await index.close();
  await clip.model.dispose();
  process.stdout.write(`${JSON.stringify({ images: r.added, skipped: r.skipped.length, seconds, images_per_s: r.added / seconds, load_s: loadS, peak_rss_bytes: process.resourceUsage().maxRSS * 1024 })}\n`);
}

// ---------------------------------------------------------------------------------------------
// Inputs

/** `n` JPEG/PNG files of mixed sizes (100–1600 px on the long side), cropped and scaled from the fixtures. */
async function makeImages(n: number): Promise<string[]> {
  const dir = path.join(CACHE, `search-images-${n}`);
  const done = path.join(dir, '.complete');
  const names = Array.from({ length: n }, (_, i) => path.join(dir, `img${String(i).padStart(5, '0')}.${i % 3 === 2 ? 'png' : 'jpg'}`));
  if (fs.existsSync(done)) return names;
  const sharp = (await import('sharp')).default;
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const sources = ['cat.jpg', 'coffee.png', 'large.jpg', 'wide.png', 'gray_portrait.png', 'tall.jpg', 'exif_rotated.jpg'].map((f) => path.join(FIXTURES, 'images', f));
  for (let i = 0; i < n; i++) {
    const src = sharp(sources[i % sources.length]!);
    const { width, height } = await src.metadata();
    const long = 100 + ((i * 379) % 1501);
    const w = Math.max(1, Math.round(width! * (0.6 + ((i * 7) % 5) / 10)));
    const h = Math.max(1, Math.round(height! * (0.6 + ((i * 3) % 5) / 10)));
    const img = src.extract({ left: Math.floor((width! - Math.min(w, width!)) / 2), top: 0, width: Math.min(w, width!), height: Math.min(h, height!) })
      .resize(long, long, { fit: 'inside' }).removeAlpha();
    await (i % 3 === 2 ? img.png() : img.jpeg({ quality: 85 })).toFile(names[i]!);
  }
  fs.writeFileSync(done, '');
  return names;
}

function listFile(files: string[]): string {
  const f = path.join(CACHE, `search-list-${files.length}.txt`);
  fs.writeFileSync(f, files.join('\n'));
  return f;
}

function runJson<T>(cmd: string, args: string[], env: Record<string, string> = {}): T {
  const out = execFileSync(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'inherit'] }).toString();
  return JSON.parse(out.trim().split('\n').at(-1)!) as T;
}

interface IndexRun { images: number; seconds: number; images_per_s: number; peak_rss_bytes: number; threads?: number; setting?: string }

// ---------------------------------------------------------------------------------------------
// Parts

async function partIndex(results: Record<string, unknown>, threads: number): Promise<void> {
  const n = Number(arg('images', '200'));
  const files = await makeImages(n);
  const bytes = files.reduce((s, f) => s + fs.statSync(f).size, 0);
  log(`index: ${n} images (${(bytes / 2 ** 20).toFixed(1)} MiB, JPEG and PNG, 100-1600 px)`);
  const model = defaultCheckpointDir();
  if (!fs.existsSync(model)) throw new Error(`${model} is missing: run node --import tsx bench/generate_checkpoint.ts`);
  const list = listFile(files);
  const ours = (dtype: string) => runJson<IndexRun>(process.execPath, ['--import', 'tsx', 'bench/search.ts', 'worker-index', '--list', list,
    '--model', model, '--dtype', dtype, '--threads', String(threads), '--db', path.join(CACHE, `search-db-${dtype}`)]);
  // a setting is <torch threads>x<OpenBLAS threads>, as in bench/run.ts's grid
  const torch = (setting: string) => {
    const [t, b] = setting.split('x');
    return { ...runJson<IndexRun>('/usr/bin/python3', ['bench/search_torch_loop.py', '--model', model, '--threads', t!, ...files],
      { ...TORCH_MALLOC_ENV, OPENBLAS_NUM_THREADS: b!, OMP_NUM_THREADS: t! }), setting };
  };
  // warm the graph caches (first build) outside the timing
  for (const dtype of ['fp32', 'q8']) runJson<IndexRun>(process.execPath, ['--import', 'tsx', 'bench/search.ts', 'worker-index', '--list', listFile(files.slice(0, 2)),
    '--model', model, '--dtype', dtype, '--threads', String(threads), '--db', path.join(CACHE, `search-db-warm-${dtype}`)]);
  const torchRuns: IndexRun[] = [];
  const fp32: IndexRun[] = [];
  const q8: IndexRun[] = [];
  // the two best settings of `npm run bench` on image batch 8 (oversubscribing both pools is the worst)
  const settings = arg('torch-grid', `1x${threads},${threads}x1`).split(',');
  for (const t of settings) {
    log(`  torch loop, ${t} (torch threads x OpenBLAS threads) ...`);
    torchRuns.push(torch(t));
    log(`    ${torchRuns.at(-1)!.images_per_s.toFixed(3)} images/s`);
    log('  ours fp32 ...');
    fp32.push(ours('fp32'));
    log(`    ${fp32.at(-1)!.images_per_s.toFixed(3)} images/s`);
    log('  ours q8 ...');
    q8.push(ours('q8'));
    log(`    ${q8.at(-1)!.images_per_s.toFixed(3)} images/s`);
  }
  const best = (rs: IndexRun[]) => rs.reduce((a, b) => (b.images_per_s > a.images_per_s ? b : a));
  results.index = { images: n, bytes, torch: torchRuns, fp32, q8, best: { torch: best(torchRuns), fp32: best(fp32), q8: best(q8) } };
}

async function partRss(results: Record<string, unknown>, threads: number): Promise<void> {
  const counts = arg('rss-images', '200,2000').split(',').map(Number);
  const out: Record<string, IndexRun> = {};
  for (const n of counts) {
    const files = await makeImages(n);
    log(`rss: indexing ${n} images with the tiny fixture model ...`);
    out[n] = runJson<IndexRun>(process.execPath, ['--import', 'tsx', 'bench/search.ts', 'worker-index', '--list', listFile(files),
      '--model', TINY, '--threads', String(threads), '--db', path.join(CACHE, `search-db-rss-${n}`)]);
    log(`  peak RSS ${(out[n]!.peak_rss_bytes / 2 ** 20).toFixed(0)} MiB, ${out[n]!.images_per_s.toFixed(1)} images/s`);
  }
  results.rss = out;
}

/** Clustered unit vectors: `clusters` random centres, each point = centre + N(0, spread^2) noise, normalised. */
function clustered(n: number, dim: number, seed: number, centres: Float32Array, clusters: number, spread = 0.35): Float32Array {
  let s = seed >>> 0;
  const rnd = () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const gauss = () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
  const out = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    const c = Math.floor(rnd() * clusters);
    let norm = 0;
    for (let j = 0; j < dim; j++) {
      const x = centres[c * dim + j]! + (spread / Math.sqrt(dim)) * gauss();
      out[i * dim + j] = x;
      norm += x * x;
    }
    norm = Math.sqrt(norm);
    for (let j = 0; j < dim; j++) out[i * dim + j]! /= norm;
  }
  return out;
}

/** The synthetic table's rows, 50,000 at a time: row `start + i` is vectors[i], named syntheticPath(start + i). */
function* syntheticChunks(n: number, dim: number, centres: Float32Array): Generator<{ start: number; m: number; vectors: Float32Array }> {
  const chunk = 50_000;
  for (let start = 0; start < n; start += chunk) {
    const m = Math.min(chunk, n - start);
    yield { start, m, vectors: clustered(m, dim, 1000 + start, centres, 1000) };
  }
}
const syntheticPath = (row: number) => `/synthetic/${row}.jpg`;

/** For each query, the paths of the `k` rows with the largest dot product (the rows regenerated as syntheticIndex wrote them). */
function exactTopK(n: number, dim: number, centres: Float32Array, qs: Float32Array, queries: number, k: number): Set<string>[] {
  const best = Array.from({ length: queries }, () => [] as { row: number; score: number }[]);
  for (const { start, m, vectors: v } of syntheticChunks(n, dim, centres)) {
    for (let q = 0; q < queries; q++) {
      const top = best[q]!;
      const qv = qs.subarray(q * dim, (q + 1) * dim);
      for (let r = 0; r < m; r++) {
        let dot = 0;
        for (let j = 0, o = r * dim; j < dim; j++) dot += qv[j]! * v[o + j]!;
        if (top.length < k || dot > top[top.length - 1]!.score) {
          top.push({ row: start + r, score: dot });
          top.sort((a, b) => b.score - a.score);
          if (top.length > k) top.pop();
        }
      }
    }
  }
  return best.map((top) => new Set(top.map((t) => syntheticPath(t.row))));
}

function centresFor(clusters: number, dim: number): Float32Array {
  const c = clustered(clusters, dim, 99, new Float32Array(dim), 1, 1);
  return c;
}

/** A table of `n` synthetic rows in an index folder whose metadata names `model` (768-dim). */
async function syntheticIndex(db: string, n: number, model: string, dim: number): Promise<{ centres: Float32Array }> {
  const lancedb = await import('@lancedb/lancedb');
  const { schemaFor, loadLance, arrowModule, FORMAT, SCHEMA_VERSION, TABLE_NAME } = await import('../src/search/store.js');
  await loadLance();
  const arrow = arrowModule();
  type Meta = import('../src/search/store.js').IndexMetadata;
  const centres = centresFor(1000, dim);
  const done = `${db}.complete`;
  if (fs.existsSync(done)) return { centres };
  fs.rmSync(db, { recursive: true, force: true });
  const meta: Meta = { format: FORMAT, schemaVersion: SCHEMA_VERSION, model: fs.realpathSync(model), revision: null, dtype: 'fp32', projectionDim: dim, createdAt: new Date().toISOString() };
  // the ImageStore opens its folder only when it is its own: the marker goes next to it, not in it
  const conn = await lancedb.connect(db);
  const schema = schemaFor(meta) as Arrow.Schema;
  const table = await conn.createEmptyTable(TABLE_NAME, schema);
  for (const { start, m, vectors } of syntheticChunks(n, dim, centres)) {
    const child = arrow.makeData({ type: new arrow.Float32(), length: m * dim, data: vectors });
    const vec = arrow.makeVector(arrow.makeData({ type: schema.fields[4]!.type, length: m, nullCount: 0, child }));
    const paths = arrow.vectorFromArray(Array.from({ length: m }, (_, i) => syntheticPath(start + i)), new arrow.Utf8());
    const size = arrow.vectorFromArray(Array.from({ length: m }, () => 1000n), new arrow.Int64());
    const mtime = arrow.vectorFromArray(Array.from({ length: m }, () => 0), new arrow.Float64());
    const sha = arrow.vectorFromArray(Array.from({ length: m }, (_, i) => String(start + i)), new arrow.Utf8());
    const children = [paths, size, mtime, sha, vec].map((v) => v.data[0]!);
    const batch = new arrow.RecordBatch(schema, arrow.makeData({ type: new arrow.Struct(schema.fields), length: m, nullCount: 0, children }));
    await table.add(new arrow.Table(batch));
    log(`  ${start + m} rows`);
  }
  table.close();
  fs.writeFileSync(done, '');
  return { centres };
}

async function partScan(results: Record<string, unknown>): Promise<void> {
  // Exact-scan latency (no index) of a k=10 query by row count: the store's share of a search.
  const { ImageIndex } = await import('../src/search/index.js');
  const dim = 768;
  const model = defaultCheckpointDir();
  const out: Record<string, { wall_p50_ms: number; cpu_p50_ms: number }> = {};
  for (const n of arg('scan-rows', '10000,25000,50000,100000').split(',').map(Number)) {
    const db = path.join(CACHE, `search-scan-${n}`);
    const { centres } = await syntheticIndex(db, n, fs.existsSync(model) ? model : TINY, dim);
    const index = await ImageIndex.open(db, { ann: { minRows: Number.MAX_SAFE_INTEGER } });
    const nq = Number(arg('scan-queries', '12'));
    const qs = clustered(nq, dim, 7, centres, 1000);
    const times: number[] = [];
    const cpu: number[] = [];
    for (let i = 0; i < nq; i++) {
      const t = performance.now();
      const c = process.cpuUsage();
      await index.searchVector(qs.subarray(i * dim, (i + 1) * dim), { k: 10 });
      times.push(performance.now() - t);
      const d = process.cpuUsage(c);
      cpu.push((d.user + d.system) / 1000);
    }
    await index.close();
    out[n] = { wall_p50_ms: median(times.slice(2)), cpu_p50_ms: median(cpu.slice(2)) };
    log(`scan: ${n} rows exact, p50 ${out[n]!.wall_p50_ms.toFixed(1)} ms wall, ${out[n]!.cpu_p50_ms.toFixed(1)} ms CPU (all threads)`);
  }
  results.scan = out;
}

async function partSearch(results: Record<string, unknown>, threads: number): Promise<void> {
  const { ImageIndex } = await import('../src/search/index.js');
  const n = Number(arg('vectors', '1000000'));
  const dim = 768;
  const model = defaultCheckpointDir();
  if (!fs.existsSync(model)) throw new Error(`${model} is missing: run node --import tsx bench/generate_checkpoint.ts`);
  const db = path.join(CACHE, `search-synthetic-${n}`);
  log(`search: ${n} clustered ${dim}-dim vectors in ${db}`);
  const t0 = performance.now();
  const { centres } = await syntheticIndex(db, n, model, dim);
  const writeS = (performance.now() - t0) / 1000;
  const index = await ImageIndex.open(db, { threads, graphCacheDir: path.join(CACHE, 'graphs-search-fp32') });
  const { ImageStore, DEFAULT_ANN } = await import('../src/search/store.js');
  const store = await ImageStore.open(db);
  let buildS = 0;
  if (!(await store.hasAnnIndex())) {
    log('  building the IVF_PQ index ...');
    const t = performance.now();
    await store.buildAnnIndex();
    buildS = (performance.now() - t) / 1000;
    log(`  built in ${buildS.toFixed(1)} s`);
  }
  store.close();

  // recall@10 of the approximate search against the exact top 10, on queries drawn from the data's
  // distribution. The exact answer is computed here (the rows regenerated chunk by chunk from their seeds:
  // unit vectors, so cosine = dot product); LanceDB's own exact scan (bypassVectorIndex) gives the same
  // sets but took ~26 s per query on 1M rows. Swept over refine factors (PQ candidates re-ranked with the
  // full vectors: k x refine), each with its own ImageIndex.
  const queries = Number(arg('queries', '30'));
  const qs = clustered(queries, dim, 4242, centres, 1000);
  const truth = exactTopK(n, dim, centres, qs, queries, 10);
  const sweep: { nprobes: number; refine_factor: number; recall_at_10: number; store_p50_ms: number; store_p95_ms: number; store_cpu_p50_ms: number }[] = [];
  const nprobes = Number(arg('nprobes', '32'));
  for (const refineFactor of arg('refine', '20,50,100').split(',').map(Number)) {
    const probe = await ImageIndex.open(db, { threads, ann: { nprobes, refineFactor } });
    let hits = 0;
    const storeTimes: number[] = [];
    const storeCpu: number[] = [];
    for (let round = 0; round < 2; round++) { // the first round warms LanceDB's caches; the second is timed
      for (let i = 0; i < queries; i++) {
        const t = performance.now();
        const c = process.cpuUsage();
        const got = await probe.searchVector(qs.subarray(i * dim, (i + 1) * dim), { k: 10 });
        if (round === 0) continue;
        storeTimes.push(performance.now() - t);
        const d = process.cpuUsage(c);
        storeCpu.push((d.user + d.system) / 1000);
        hits += got.filter((r) => truth[i]!.has(r.path)).length;
      }
    }
    await probe.close();
    sweep.push({ nprobes, refine_factor: refineFactor, recall_at_10: hits / (queries * 10), store_p50_ms: median(storeTimes), store_p95_ms: pct(storeTimes, 0.95), store_cpu_p50_ms: median(storeCpu) });
    log(`  nprobes ${nprobes}, refine ${refineFactor}: recall@10 ${sweep.at(-1)!.recall_at_10.toFixed(4)}, store-only p50 ${median(storeTimes).toFixed(1)} ms, p95 ${pct(storeTimes, 0.95).toFixed(1)} ms`);
  }
  const chosen = sweep.find((r) => r.refine_factor === DEFAULT_ANN.refineFactor && r.nprobes === DEFAULT_ANN.nprobes);

  // end to end: tokenize + text tower (warm) + store
  const texts = ['一只在沙发上睡觉的猫', 'Strand bei Sonnenuntergang', 'red bicycle', 'a photo of a dog', '夜晚的城市天际线', 'Ein Hund im Schnee',
    'a bowl of ramen', 'mountain lake at dawn', '海边的灯塔', 'Kinder spielen im Park'];
  await index.search(texts[0]!, { k: 10 }); // loads the text tower
  const e2e: number[] = [];
  const e2eCpu: number[] = [];
  for (let r = 0; r < 3; r++) {
    for (const text of texts) {
      const t = performance.now();
      const c = process.cpuUsage();
      await index.search(text, { k: 10 });
      e2e.push(performance.now() - t);
      const d = process.cpuUsage(c);
      e2eCpu.push((d.user + d.system) / 1000);
    }
  }
  await index.close();
  results.search = { vectors: n, dim, write_s: writeS, build_s: buildS, queries, ann: DEFAULT_ANN, sweep,
    recall_at_10: chosen?.recall_at_10, store_p50_ms: chosen?.store_p50_ms, e2e_p50_ms: median(e2e), e2e_p95_ms: pct(e2e, 0.95), e2e_cpu_p50_ms: median(e2eCpu) };
  log(`  end to end p50 ${median(e2e).toFixed(1)} ms, p95 ${pct(e2e, 0.95).toFixed(1)} ms`);
}

async function partOneshot(results: Record<string, unknown>, threads: number): Promise<void> {
  const n = Number(arg('vectors', '1000000'));
  const db = path.join(CACHE, `search-synthetic-${n}`);
  if (!fs.existsSync(db)) throw new Error(`${db} is missing: run the search part first`);
  const dist = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
  const cmd = fs.existsSync(dist) ? [dist] : ['--import', 'tsx', path.join(ROOT, 'src', 'cli', 'main.ts')];
  const env = { ...process.env, ALTCLIP_CACHE: path.join(CACHE, 'graphs-search-fp32') };
  const times: number[] = [];
  for (let i = 0; i < 4; i++) {
    const t = performance.now();
    const r = spawnSync(process.execPath, [...cmd, 'search', 'Strand bei Sonnenuntergang', '--db', db, '-k', '10', '--json', '--threads', String(threads)], { env });
    if (r.status !== 0) throw new Error(`altclip search failed: ${r.stderr}`);
    times.push((performance.now() - t) / 1000);
  }
  results.oneshot = { runs_s: times, warm_median_s: median(times.slice(1)), via: fs.existsSync(dist) ? 'dist (npm run build)' : 'tsx' };
  log(`oneshot: ${times.map((t) => t.toFixed(2)).join(', ')} s (first run warms the graph cache)`);
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (process.argv[2] === 'worker-index') return workerIndex();
  fs.mkdirSync(CACHE, { recursive: true });
  const threads = Number(arg('threads', String(os.availableParallelism())));
  const parts = arg('parts', 'index,rss,scan,search,oneshot').split(',');
  const cpu = (() => {
    try {
      return /Model name:\s*(.+)/.exec(execFileSync('lscpu').toString())?.[1]?.trim() ?? os.cpus()[0]!.model;
    } catch {
      return os.cpus()[0]!.model;
    }
  })();
  const results: Record<string, unknown> = { started: new Date().toISOString(), cpu, cores: os.cpus().length, threads, load_start: os.loadavg()[0] };
  const file = path.join(CACHE, 'search-last.json');
  const save = () => fs.writeFileSync(file, JSON.stringify({ ...results, load_end: os.loadavg()[0] }, null, 1));
  for (const part of parts) {
    if (part === 'index') await partIndex(results, threads);
    else if (part === 'rss') await partRss(results, threads);
    else if (part === 'scan') await partScan(results);
    else if (part === 'search') await partSearch(results, threads);
    else if (part === 'oneshot') await partOneshot(results, threads);
    else throw new Error(`unknown part ${part}`);
    save();
  }
  log(`results: ${file}`);
  process.stdout.write(`${JSON.stringify({ ...results, load_end: os.loadavg()[0] }, null, 1)}\n`);
}

await main();
