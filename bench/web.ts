// altclip/web on the full-size model (random weights, BAAI/AltCLIP's config: bench/generate_checkpoint.ts),
// served from 127.0.0.1 to Debian's chromium, against the Node package in the same run, interleaved:
//   Node q8 (1 thread) -> page q8 (1 thread, cold: empty cache) -> Node q8 (2 threads) -> page q8 (2 threads, from the cache)
// Measured: time to first result in the page (download + build + decode/preprocess + first image),
// warm getImageFeatures (1 image) and getTextFeatures (1 text, 8 tokens), the page's peak memory (sum
// of the renderer processes' RSS, polled), and the Node process's.
//
//   node --import tsx bench/web.ts [--reps 5] [--fp32]      (--fp32 also tries fp32 in the page)
import { chromium, type BrowserContext } from 'playwright-core';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ensureCheckpoint } from './generate_checkpoint.js';
import { AltCLIPModel } from '../src/models/altclip.js';
import { AltCLIPProcessor } from '../src/processor.js';
import { buildWeb } from '../scripts/build-web.mjs';
import { startStaticServer } from '../test/web_server.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const reps = Number(process.argv[process.argv.indexOf('--reps') + 1]) || 5;
const tryFp32 = process.argv.includes('--fp32');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const IMAGE = path.join(root, 'test', 'fixtures', 'images', 'cat.jpg');
const TEXT = 'a photo of a cat'; // 7 tokens with <s> </s>

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const gib = (n: number) => (n / 2 ** 30).toFixed(2);

/** RSS of the renderer processes under `pid` (the page and its workers), in bytes. */
function rendererRss(pid: number): number {
  const children = new Map<number, number[]>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
    } catch { /* gone */ }
  }
  let total = 0;
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      try {
        if (fs.readFileSync(`/proc/${c}/cmdline`, 'utf8').includes('--type=renderer')) {
          total += Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${c}/status`, 'utf8'))?.[1] ?? 0) * 1024;
        }
      } catch { /* gone */ }
      walk(c);
    }
  };
  walk(pid);
  return total;
}

interface Timings { image_ms: number[]; text_ms: number[] }

async function nodeRun(dir: string, threads: number, graphCacheDir: string): Promise<Timings & { load_s: number; rss_bytes: number }> {
  const t0 = performance.now();
  const model = await AltCLIPModel.fromPretrained(dir, { dtype: 'q8', threads, graphCacheDir });
  const load = (performance.now() - t0) / 1000;
  const processor = await AltCLIPProcessor.fromPretrained(dir);
  const { pixelValues } = await processor.process({ images: [IMAGE] });
  const { inputIds, attentionMask } = await processor.process({ text: [TEXT], padding: true });
  const out: Timings = { image_ms: [], text_ms: [] };
  for (let i = 0; i <= reps; i++) {
    let t = performance.now();
    await model.getImageFeatures({ pixelValues: pixelValues! });
    if (i > 0) out.image_ms.push(performance.now() - t);
    t = performance.now();
    await model.getTextFeatures({ inputIds: inputIds!, attentionMask });
    if (i > 0) out.text_ms.push(performance.now() - t);
  }
  const rss = process.memoryUsage().rss;
  await model.dispose();
  return { ...out, load_s: load, rss_bytes: rss };
}

interface PageResult extends Timings { first_result_s: number; load_s: number; downloaded_bytes: number; peak_rss_bytes: number; threads: number; error?: string }

/** The pid of the chromium whose command line names `userDataDir`. */
function browserPid(userDataDir: string): number {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (cmd.includes(userDataDir) && !cmd.includes('--type=')) return Number(d);
    } catch { /* gone */ }
  }
  throw new Error(`no chromium process for ${userDataDir}`);
}

async function pageRun(browser: BrowserContext, browserPid: number, url: string, base: string, dtype: string, threads: number, clear: boolean): Promise<PageResult> {
  const page = await browser.newPage();
  await page.addInitScript('window.__name = (f) => f');
  await page.goto(`${url}/test/web_harness.html`);
  await page.waitForFunction(() => (window as unknown as { altclipReady?: boolean }).altclipReady === true);
  let peak = 0;
  const poll = setInterval(() => { peak = Math.max(peak, rendererRss(browserPid)); }, 250);
  try {
    const r = await page.evaluate(async ({ base, dtype, threads, clear, reps, text }) => {
      const a = (window as any).altclip;
      if (clear) await a.clearCache();
      let downloaded = 0;
      const t0 = performance.now();
      try {
        const [model, proc] = await Promise.all([
          a.AltCLIPModel.fromPretrained(base, { dtype, threads, onProgress: (p: any) => { if (p.stage === 'download') downloaded = p.loaded; } }),
          a.AltCLIPProcessor.fromPretrained(base),
        ]);
        const load = performance.now() - t0;
        const { pixelValues } = await proc.process({ images: ['/test/fixtures/images/cat.jpg'] });
        await model.getImageFeatures({ pixelValues });
        const first = performance.now() - t0;
        const enc = await proc.process({ text: [text], padding: true });
        const image_ms: number[] = [];
        const text_ms: number[] = [];
        for (let i = 0; i <= reps; i++) {
          let t = performance.now();
          await model.getImageFeatures({ pixelValues });
          if (i > 0) image_ms.push(performance.now() - t);
          t = performance.now();
          await model.getTextFeatures(enc);
          if (i > 0) text_ms.push(performance.now() - t);
        }
        await model.dispose();
        return { first_result_s: first / 1000, load_s: load / 1000, downloaded_bytes: downloaded, image_ms, text_ms, threads: a.env.wasm.numThreads };
      } catch (e) {
        return { error: String((e as Error)?.message ?? e), first_result_s: NaN, load_s: NaN, downloaded_bytes: downloaded, image_ms: [], text_ms: [], threads: a.env.wasm.numThreads };
      }
    }, { base, dtype, threads, clear, reps, text: TEXT });
    return { ...r, peak_rss_bytes: Math.max(peak, rendererRss(browserPid)) };
  } finally {
    clearInterval(poll);
    await page.close();
  }
}

const dir = ensureCheckpoint();
const rel = `/${path.relative(root, dir)}/`;
await buildWeb();
const server = await startStaticServer(root);
const graphCacheDir = path.join(root, 'bench', '.cache', 'web-node-graphs');
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
console.error(`bench/web.ts: ${cpu}, ${os.availableParallelism()} cores, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);

// a persistent profile (on disk, as a visitor's browser): the Cache API outlives the page, so the
// second page loads from it; Playwright's default contexts keep storage in memory, per context
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-web-bench-profile-'));
let context: BrowserContext | undefined;
const results: Record<string, unknown> = { cpu, cores: os.availableParallelism(), loadavg_start: os.loadavg(), reps, chromium: '' };
try {
  context = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const browser = context;
  results.chromium = context.browser()?.version() ?? (await (await context.newPage()).evaluate(() => navigator.userAgent));
  const pid = browserPid(userDataDir);
  for (const threads of [1, 2]) {
    console.error(`node q8, ${threads} thread(s)...`);
    const node = await nodeRun(dir, threads, graphCacheDir);
    console.error(`  image ${median(node.image_ms).toFixed(0)} ms, text ${median(node.text_ms).toFixed(0)} ms`);
    console.error(`page q8, ${threads} thread(s)${threads === 1 ? ' (cold: cache cleared)' : ' (from the cache)'}...`);
    const web = await pageRun(browser, pid, server.url, rel, 'q8', threads, threads === 1);
    if (web.error) console.error(`  failed: ${web.error}`);
    else console.error(`  first result ${web.first_result_s.toFixed(1)} s, image ${median(web.image_ms).toFixed(0)} ms, text ${median(web.text_ms).toFixed(0)} ms, peak ${gib(web.peak_rss_bytes)} GiB`);
    results[`q8_threads${threads}`] = {
      node: { ...node, image_median_ms: median(node.image_ms), text_median_ms: median(node.text_ms) },
      web: { ...web, image_median_ms: web.image_ms.length ? median(web.image_ms) : null, text_median_ms: web.text_ms.length ? median(web.text_ms) : null },
      image_ratio: web.image_ms.length ? median(web.image_ms) / median(node.image_ms) : null,
      text_ratio: web.text_ms.length ? median(web.text_ms) / median(node.text_ms) : null,
    };
  }
  if (tryFp32) {
    console.error('page fp32, 2 threads...');
    const web = await pageRun(browser, pid, server.url, rel, 'fp32', 2, false);
    console.error(web.error ? `  failed: ${web.error}` : `  image ${median(web.image_ms).toFixed(0)} ms, text ${median(web.text_ms).toFixed(0)} ms`);
    results.fp32_threads2 = { web };
  }
  results.loadavg_end = os.loadavg();
} finally {
  await context?.close();
  await server.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
const outFile = path.join(root, 'bench', '.cache', 'web-last.json');
fs.writeFileSync(outFile, JSON.stringify(results, null, 1));
console.log(JSON.stringify(results, (k, v) => (k.endsWith('_ms') && Array.isArray(v) ? v.map((x: number) => Math.round(x)) : v), 1));
