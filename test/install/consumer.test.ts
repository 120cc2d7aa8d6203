// The package as a dependency, the way a user gets it: `npm pack` this checkout, install the tarball
// into an empty project exactly as the README says, with nothing but the npm registry (npm's cache
// first: --prefer-offline; a fresh project needs the registry's package metadata, which `npm ci` of
// this checkout does not cache), then `npx altclip classify` on the tiny checkpoint and
// `import ... from 'altclip'` in an .mjs file, both checked against the goldens. Nothing may be
// fetched from outside the registry: onnxruntime-node's install script would fetch CUDA libraries
// from nuget.org, and npm 11 runs a dependency's install script (with a notice) unless the installing
// project's allowScripts denies it, which is the one step the README gives (without it, this install
// fails here with "getaddrinfo ENOTFOUND api.nuget.org").
// Slow (a build and a full install), so it is not part of `npm test`: `npm run test:install`
// (run by .ci/run).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ROOT, type Run, run } from '../helpers/cli.js';
import { FIXTURES, Goldens } from '../helpers/goldens.js';

const MODEL = path.join(FIXTURES, 'models', 'tiny-altclip');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-install-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const consumer = path.join(tmp, 'consumer');
const cache = path.join(tmp, 'altclip-cache');

const index = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'goldens', 'tiny-altclip.json'), 'utf8'));
const g = new Goldens(path.join(FIXTURES, 'goldens', 'tiny-altclip.safetensors'));
const batch3 = index.combos.find((c: { name: string }) => c.name === 'batch3') as { texts: string[]; images: string[] };
const images = batch3.images.map((p) => path.join(FIXTURES, p));

const softmax = (row: number[]) => {
  const e = row.map((x) => Math.exp(x - Math.max(...row)));
  return e.map((x) => x / e.reduce((a, b) => a + b, 0));
};
const logits = g.get('batch3/outputs/logits_per_image');
const expectedScores = Array.from({ length: 3 }, (_, i) => softmax([...(logits.data as Float32Array).subarray(i * 3, i * 3 + 3)]));

function ok(r: Run, what: string): Run {
  assert.equal(r.code, 0, `${what} failed:\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** npm with the user's npm cache, the registry only for what the cache lacks. */
const npm = (args: string[], cwd: string, env: Record<string, string> = {}) =>
  run('npm', [...args, '--prefer-offline', '--no-audit', '--no-fund'], cache, {
    cwd, env: { npm_config_update_notifier: 'false', ...env }, limitMs: 40 * 60_000, // a build, or a full install on a busy machine
  });

function assertScores(results: { labels: { label: string; score: number }[] }[], what: string): void {
  assert.equal(results.length, 3, what);
  results.forEach((r, i) => batch3.texts.forEach((t, j) => {
    const got = r.labels.find((l) => l.label === t)!.score;
    assert.ok(Math.abs(got - expectedScores[i]![j]!) <= 1e-5, `${what}: image ${i}, ${t}: ${got} vs ${expectedScores[i]![j]}`);
  }));
}

describe('installed from the packed tarball into an empty project (npm registry only)', () => {
  let installLog = '';
  before(async () => {
    const packed = ok(await npm(['pack', '--json', '--pack-destination', tmp], ROOT), 'npm pack');
    const tarball = path.join(tmp, JSON.parse(packed.stdout.slice(packed.stdout.indexOf('[')))[0].filename);
    fs.mkdirSync(consumer);
    fs.writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }, null, 2));
    // README "Quick start" / "Install notes", step by step.
    ok(await run('npm', ['pkg', 'set', 'allowScripts.onnxruntime-node=false', '--json'], cache, { cwd: consumer }), 'npm pkg set');
    const installed = ok(await npm(['install', tarball], consumer), 'npm install <tarball>');
    installLog = installed.stdout + installed.stderr;
  });

  it('installs without running onnxruntime-node\'s download and without config warnings', () => {
    assert.doesNotMatch(installLog, /Unknown (project|user|env) config/);
    assert.doesNotMatch(installLog, /nuget|script\/install/i);
    // the CPU binaries come with the package
    const bin = path.join(consumer, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', `${process.platform}`, process.arch);
    assert.ok(fs.existsSync(path.join(bin, 'onnxruntime_binding.node')), bin);
  });

  it('npx altclip classify on the tiny checkpoint = softmax of the golden logits', async () => {
    const r = ok(await run('npx', ['--no-install', 'altclip', 'classify', ...images, '--labels', ...batch3.texts, '--template', '{}', '--model', MODEL, '--json'],
      cache, { cwd: consumer }), 'npx altclip classify');
    assertScores(JSON.parse(r.stdout).results, 'npx altclip classify');
  });

  it('an .mjs file imports the library: pipeline(), loadAltCLIP() with identity, embedTexts', async () => {
    const script = path.join(consumer, 'use.mjs');
    fs.writeFileSync(script, `
import { pipeline, loadAltCLIP, embedTexts, zeroShotImageClassification } from 'altclip';
const [model, images, labels] = JSON.parse(process.argv[2]);
const classify = await pipeline('zero-shot-image-classification', model, { threads: 1 });
const viaPipeline = await classify(images, labels, { hypothesisTemplate: '{}' });
await classify.dispose();
const clip = await loadAltCLIP(model, { parts: 'text', threads: 1 });
const dims = (await embedTexts(clip, [])).dims;
await clip.model.dispose();
console.log(JSON.stringify({ results: viaPipeline.map((labels) => ({ labels })), identity: clip.identity, dims }));
`);
    const r = ok(await run(process.execPath, [script, JSON.stringify([MODEL, images, batch3.texts])], cache, { cwd: consumer }), 'node use.mjs');
    const out = JSON.parse(r.stdout);
    assertScores(out.results, 'import from altclip');
    assert.deepEqual(out.identity, { model: fs.realpathSync(MODEL), revision: null, dtype: 'fp32', projectionDim: 24 });
    assert.deepEqual(out.dims, [0, 24]);
  });

  it('where the scripts do run, ONNXRUNTIME_NODE_INSTALL_CUDA=skip skips both onnxruntime-node copies (the pinned 1.30, and 1.19 under lancedb)', async () => {
    // onnxruntime-node 1.30 reads ONNXRUNTIME_NODE_INSTALL, then the older ONNXRUNTIME_NODE_INSTALL_CUDA;
    // the 1.19 copy that @lancedb/lancedb brings (via @huggingface/transformers) reads only the latter
    // and would download from github.com.
    // Allow the scripts, as a project without the allowScripts entry (or older npm) would run them.
    const pkgFile = path.join(consumer, 'package.json');
    const pkg = JSON.parse(fs.readFileSync(pkgFile, 'utf8'));
    fs.writeFileSync(pkgFile, JSON.stringify({ ...pkg, allowScripts: { 'onnxruntime-node': true } }, null, 2));
    const r = ok(await npm(['rebuild', 'onnxruntime-node', '--foreground-scripts'], consumer, { ONNXRUNTIME_NODE_INSTALL_CUDA: 'skip' }), 'npm rebuild onnxruntime-node');
    // The version package.json pins (what the package is tested with), not whatever is newest on the registry.
    const pinned = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).dependencies['onnxruntime-node'] as string;
    assert.match(pinned, /^\d+\.\d+\.\d+$/, 'onnxruntime-node is pinned to one version');
    assert.match(r.stdout + r.stderr, new RegExp(`onnxruntime-node@${pinned.replaceAll('.', '\\.')} postinstall\n> node \\./script/install`), `the ${pinned} install script ran`);
    assert.match(r.stdout + r.stderr, /onnxruntime-node@1\.19\.\d+ postinstall\n> node \.\/script\/install/, 'the 1.19 install script ran');
    assert.doesNotMatch(r.stdout + r.stderr, /Downloading/);
    ok(await run(process.execPath, ['-e', "require('onnxruntime-node')"], cache, { cwd: consumer }), 'onnxruntime-node loads');
  });
});
