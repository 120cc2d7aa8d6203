// Builds the browser bundles: dist/web/altclip.js (onnxruntime-web's WASM build) and
// dist/web/altclip.webgpu.js (its WebGPU + WASM build), each one ES module (no bundler needed to use
// it), and the onnxruntime-web runtime files they load from beside themselves.
//
// The same sources as the Node package; what differs in the page is chosen here, in one place:
//  - onnxruntime-node        -> onnxruntime-web (the same Tensor / InferenceSession API)
//  - models/graph_cache.ts   -> web/session.ts   (as imported by models/towers.ts)
//  - models/session.ts       -> web/session.ts   (as imported by models/towers.ts)
//  - models/quantize.ts      -> web/quantize.ts  (as imported by models/towers.ts)
//  - node:fs                 -> web/range_fs.ts  (read-only files of HTTP byte ranges, for the weights parsers)
//  - node:timers/promises    -> setImmediate as a zero timeout
//  - models/ort_env.mjs      -> nothing (it switches off onnxruntime-node's telemetry in the Node process)
//  - Buffer                  -> the `buffer` package (Node's Buffer API on Uint8Array)
//  - other Node built-ins, sharp, cli-progress: a stub that throws if ever called (only Node code paths use them)
import * as esbuild from 'esbuild';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const defaultOut = path.join(root, 'dist', 'web');

const UNAVAILABLE = /^(node:.*|fs|path|os|crypto|url|zlib|worker_threads|sharp|cli-progress|commander)$/;

/**
 * @param {'wasm' | 'webgpu'} flavour onnxruntime-web's WASM-only build (14 MB runtime), or its WebGPU + WASM one (28 MB)
 * @returns {esbuild.Plugin}
 */
const browserSeams = (flavour) => ({
  name: 'altclip-browser-seams',
  setup(build) {
    const ort = flavour === 'wasm' ? 'onnxruntime-web/wasm' : 'onnxruntime-web';
    build.onResolve({ filter: /^onnxruntime-(node|web)$/ }, async (args) => {
      if (args.pluginData?.ort) return undefined; // our own resolve below: esbuild's default resolution
      return build.resolve(ort, { kind: 'import-statement', resolveDir: root, pluginData: { ort: true } });
    });
    /** @type {Record<string, string>} */
    const webModule = { './graph_cache.js': 'session.ts', './session.js': 'session.ts', './quantize.js': 'quantize.ts' };
    build.onResolve({ filter: /^\.\/(graph_cache|session|quantize)\.js$/ }, (args) => {
      if (path.resolve(args.importer) !== path.join(root, 'src', 'models', 'towers.ts')) return undefined;
      return { path: path.join(root, 'src', 'web', webModule[args.path]) };
    });
    build.onResolve({ filter: /\/ort_env\.mjs$/ }, (args) => ({ path: args.path, namespace: 'altclip-empty' }));
    build.onLoad({ filter: /.*/, namespace: 'altclip-empty' }, () => ({ loader: 'js', contents: '' }));
    build.onResolve({ filter: /^(node:)?fs$/ }, () => ({ path: path.join(root, 'src', 'web', 'range_fs.ts') }));
    // tasks/embeddings.ts yields a macrotask between batches: a zero timeout in the page
    build.onResolve({ filter: /^(node:)?timers\/promises$/ }, (args) => ({ path: args.path, namespace: 'altclip-timers' }));
    build.onLoad({ filter: /.*/, namespace: 'altclip-timers' }, () => ({
      loader: 'js',
      contents: 'export const setImmediate = (value) => new Promise((resolve) => setTimeout(() => resolve(value), 0));',
    }));
    build.onResolve({ filter: UNAVAILABLE }, (args) => ({ path: args.path, namespace: 'altclip-unavailable' }));
    build.onLoad({ filter: /.*/, namespace: 'altclip-unavailable' }, (args) => ({
      loader: 'js',
      contents: `const fail = () => { throw new Error(${JSON.stringify(`${args.path} is not available in the browser build of altclip`)}); };
module.exports = new Proxy(fail, { get: (_t, k) => (k === '__esModule' ? false : k === 'default' ? module.exports : fail), apply: fail });`,
    }));
  },
});

/** dist/web/altclip.js (WASM) and dist/web/altclip.webgpu.js (WebGPU where the browser has an adapter, else WASM). */
export async function buildWeb({ minify = true, outDir = defaultOut } = {}) {
  const out = outDir;
  fs.mkdirSync(out, { recursive: true });
  const [result] = await Promise.all(/** @type {const} */ (['wasm', 'webgpu']).map((flavour) => buildOne(flavour, minify, out)));
  // onnxruntime-web's runtime (emscripten .mjs + .wasm), loaded from beside the bundles
  const ortDist = path.join(root, 'node_modules', 'onnxruntime-web', 'dist');
  for (const f of fs.readdirSync(ortDist)) {
    if (/^ort-wasm-simd-threaded(\.jsep)?\.(mjs|wasm)$/.test(f)) fs.copyFileSync(path.join(ortDist, f), path.join(out, f));
  }
  return result;
}

/** @param {'wasm' | 'webgpu'} flavour @param {boolean} minify @param {string} out */
async function buildOne(flavour, minify, out) {
  return esbuild.build({
    entryPoints: [path.join(root, 'src', 'web', 'index.ts')],
    outfile: path.join(out, flavour === 'wasm' ? 'altclip.js' : 'altclip.webgpu.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    conditions: ['onnxruntime-web-use-extern-wasm'],
    minify,
    sourcemap: true,
    legalComments: 'linked',
    inject: [path.join(root, 'scripts', 'buffer-shim.mjs')],
    define: { 'process.env.NODE_ENV': '"production"' },
    plugins: [browserSeams(flavour)],
    logLevel: 'warning',
    // Node-only code paths (hub downloads, graph cache) read fs functions range_fs does not have: never called in the page
    logOverride: { 'import-is-undefined': 'silent' },
    metafile: true,
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const r = await buildWeb({ minify: !process.argv.includes('--no-minify') });
  const bytes = fs.statSync(path.join(defaultOut, 'altclip.js')).size;
  console.log(`dist/web/altclip.js: ${(bytes / 1024).toFixed(0)} KiB (${Object.keys(r.metafile.inputs).length} inputs)`);
}
