// `altclip index` images/s against `altclip embed` images/s on the same N small generated images (issue 24,
// "commits that scale"), processes alternating (embed, index, embed, index) so both see the same load;
// then the table's version count and folder size. Tiny fixture model by default (the store's cost is
// what is measured; the model's cost is the same in both commands).
//
//   node --import tsx bench/index_throughput.ts [--images 10240] [--rounds 2] [--model test/fixtures/models/tiny-altclip]
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const N = Number(arg('images', '10240'));
const ROUNDS = Number(arg('rounds', '2'));
const MODEL = path.resolve(ROOT, arg('model', 'test/fixtures/models/tiny-altclip'));
const work = arg('work', path.join(os.tmpdir(), 'altclip-index-bench'));
const images = path.join(work, `images-${N}`);

async function generate(): Promise<void> {
  if (fs.existsSync(path.join(images, 'done'))) return;
  fs.rmSync(images, { recursive: true, force: true });
  for (let i = 0; i < N; i++) {
    const dir = path.join(images, String(Math.floor(i / 1000)).padStart(2, '0'));
    fs.mkdirSync(dir, { recursive: true });
    // 32x32 RGB, a different colour gradient per image
    const raw = Buffer.alloc(32 * 32 * 3);
    for (let p = 0; p < 32 * 32; p++) {
      raw[p * 3] = (i * 7 + p) & 255;
      raw[p * 3 + 1] = (i * 13 + (p >> 5) * 8) & 255;
      raw[p * 3 + 2] = (i >> 4) & 255;
    }
    await sharp(raw, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(path.join(dir, `img${String(i).padStart(5, '0')}.png`));
  }
  fs.writeFileSync(path.join(images, 'done'), '');
}

function altclip(args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), ...args], {
    cwd: ROOT, env: { ...process.env, ALTCLIP_CACHE: path.join(work, 'cache'), HF_HUB_OFFLINE: '1' }, encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`altclip ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return (performance.now() - t0) / 1000;
}

function folderBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += fs.statSync(path.join(e.parentPath, e.name)).size;
  }
  return n;
}

await generate();
const rows: string[] = [];
for (let round = 0; round < ROUNDS; round++) {
  const out = path.join(work, 'embed.npy');
  fs.rmSync(out, { force: true });
  fs.rmSync(`${out.slice(0, -4)}.rows.jsonl`, { force: true });
  const embedS = altclip(['embed', images, '--out', out, '--model', MODEL, '--overwrite']);
  const db = path.join(work, 'bench.db');
  fs.rmSync(db, { recursive: true, force: true });
  const indexS = altclip(['index', images, '--db', db, '--model', MODEL, '--json']);
  const versions = fs.readdirSync(path.join(db, 'images.lance', '_versions')).filter((v) => v.endsWith('.manifest')).length;
  const mb = folderBytes(db) / 1e6;
  const line = `round ${round + 1}: embed ${(N / embedS).toFixed(1)} images/s (${embedS.toFixed(1)} s), index ${(N / indexS).toFixed(1)} images/s `
    + `(${indexS.toFixed(1)} s), ratio ${(embedS / indexS).toFixed(2)}; db ${versions} versions, ${mb.toFixed(1)} MB; load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`;
  console.log(line);
  rows.push(line);
}
