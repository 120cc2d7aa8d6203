// Peak memory of loading a checkpoint: loadWeights (headers / pickle only) and then reading every
// tensor one at a time through the positioned-read path (no mmap), for a generated model.safetensors
// and the same weights as a torch.save zip (pytorch_model.bin), against the weights' size.
// Each measurement runs in a fresh child process; the baseline is a child that only imports the
// weights module. Peak RSS is the kernel's (getrusage ru_maxrss).
//
//   node --import tsx bench/weights_memory.ts [--layers N | --full] [--dir DIR] [--keep]
//
// The checkpoint has BAAI/AltCLIP's tensor names and shapes (bench/generate_checkpoint.ts) with N
// text and N vision layers (default 4: ~1.5 GB; --full: all 24, ~3.4 GB); values are filler.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { LARGE, weightSpecs } from './generate_checkpoint.js';
import { crc32 } from '../src/weights/zip.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const self = fileURLToPath(import.meta.url);
const CHUNK = 16 << 20;

interface Measure { peakRssBytes: number; tensors: number; bytesRead: number; largestTensor: number; seconds: number }

// ---- child: measure one thing and print JSON
async function child(mode: string, folder: string): Promise<void> {
  const t0 = performance.now();
  const { loadWeights, readTensorBytes } = await import('../src/weights/index.js');
  let tensors = 0, bytesRead = 0, largestTensor = 0;
  if (mode !== 'baseline') {
    const w = await loadWeights(folder);
    tensors = w.tensors.size;
    if (mode === 'read') {
      for (const ref of w.tensors.values()) {
        const b = readTensorBytes(ref);
        bytesRead += b.length;
        largestTensor = Math.max(largestTensor, b.length);
      }
    }
  }
  const m: Measure = { peakRssBytes: process.resourceUsage().maxRSS * 1024, tensors, bytesRead, largestTensor, seconds: (performance.now() - t0) / 1000 };
  process.stdout.write(JSON.stringify(m));
}

function measure(mode: string, folder: string): Measure {
  const r = spawnSync(process.execPath, ['--import', 'tsx', self, '--child', mode, folder], { encoding: 'utf8', cwd: path.resolve(here, '..') });
  if (r.status !== 0) throw new Error(`child ${mode} ${folder} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout) as Measure;
}

// ---- generation (streamed in 16 MB chunks)
interface Spec { name: string; shape: number[] }

function fill(buf: Float32Array, seed: number): void {
  let x = seed >>> 0 || 1;
  for (let i = 0; i < buf.length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    buf[i] = ((x >>> 0) / 4294967296 - 0.5) * 0.1;
  }
}

/** A tensor's bytes (filler values), in chunks. */
function* tensorChunks(spec: Spec, seed: number): Generator<Uint8Array> {
  let left = spec.shape.reduce((a, b) => a * b, 1) * 4;
  const buf = new Float32Array(Math.min(CHUNK, left) / 4);
  while (left > 0) {
    const n = Math.min(left, buf.byteLength);
    fill(buf, seed++);
    yield new Uint8Array(buf.buffer, 0, n);
    left -= n;
  }
}

function writeSafetensors(file: string, specs: Spec[]): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1) * 4;
    header[s.name] = { dtype: 'F32', shape: s.shape, data_offsets: [off, off + n] };
    off += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const fd = fs.openSync(file, 'w');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeSync(fd, len);
  fs.writeSync(fd, json);
  specs.forEach((s, i) => { for (const c of tensorChunks(s, i * 7919 + 1)) fs.writeSync(fd, c); });
  fs.closeSync(fd);
}

/** torch.save's layout: archive/data.pkl (protocol 2), archive/data/<i> stored, 64-byte aligned. */
function writeTorchBin(file: string, specs: Spec[]): void {
  const pkl = torchPickle(specs);
  const fd = fs.openSync(file, 'w');
  let pos = 0;
  const central: Buffer[] = [];
  const entry = (name: string, chunks: Iterable<Uint8Array>, size: number) => {
    const nameBuf = Buffer.from(name);
    const pad = (64 - ((pos + 30 + nameBuf.length + 4) % 64)) % 64;
    const local = Buffer.alloc(30 + nameBuf.length + 4 + pad);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt32LE(size, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    local.writeUInt16LE(4 + pad, 28);
    nameBuf.copy(local, 30);
    local.writeUInt16LE(0x4246, 30 + nameBuf.length);
    local.writeUInt16LE(pad, 32 + nameBuf.length);
    const at = pos;
    fs.writeSync(fd, local);
    pos += local.length;
    let crc = 0;
    for (const c of chunks) {
      crc = crc32(c, crc);
      fs.writeSync(fd, c);
      pos += c.length;
    }
    fs.writeSync(fd, u32(crc), 0, 4, at + 14); // patch the local header's CRC
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(size, 20);
    cd.writeUInt32LE(size, 24);
    cd.writeUInt16LE(nameBuf.length, 28);
    cd.writeUInt32LE(at, 42);
    central.push(cd, nameBuf);
  };
  entry('archive/data.pkl', [pkl], pkl.length);
  specs.forEach((s, i) => entry(`archive/data/${i}`, tensorChunks(s, i * 7919 + 1), s.shape.reduce((a, b) => a * b, 1) * 4));
  entry('archive/version', [Buffer.from('3\n')], 2);
  const cdBytes = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(central.length / 2, 8);
  eocd.writeUInt16LE(central.length / 2, 10);
  eocd.writeUInt32LE(cdBytes.length, 12);
  eocd.writeUInt32LE(pos, 16);
  fs.writeSync(fd, cdBytes);
  fs.writeSync(fd, eocd);
  fs.closeSync(fd);
}

const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n >>> 0); return b; };

function torchPickle(specs: Spec[]): Buffer {
  const out: number[] = [0x80, 2];
  const str = (s: string) => { const b = Buffer.from(s); out.push(0x58, ...u32(b.length), ...b); };
  const glob = (m: string, n: string) => out.push(...Buffer.from(`c${m}\n${n}\n`));
  const int = (n: number) => { out.push(0x4a, ...u32(n)); };
  const tuple = (xs: number[]) => { out.push(0x28); xs.forEach(int); out.push(0x74); };
  glob('collections', 'OrderedDict'); out.push(0x29, 0x52, 0x28);
  specs.forEach((s, i) => {
    const numel = s.shape.reduce((a, b) => a * b, 1);
    str(s.name);
    glob('torch._utils', '_rebuild_tensor_v2');
    out.push(0x28, 0x28); str('storage'); glob('torch', 'FloatStorage'); str(String(i)); str('cpu'); int(numel); out.push(0x74, 0x51);
    int(0); tuple(s.shape); tuple(s.shape.map((_, d) => s.shape.slice(d + 1).reduce((a, b) => a * b, 1)));
    out.push(0x89); glob('collections', 'OrderedDict'); out.push(0x29, 0x52, 0x74, 0x52);
  });
  out.push(0x75, 0x2e);
  return Buffer.from(out);
}

// ---- main
async function main(): Promise<void> {
  const argv = process.argv;
  const ci = argv.indexOf('--child');
  if (ci >= 0) return child(argv[ci + 1], argv[ci + 2]);

  const opts = new Command()
    .option('--layers <n>', 'text and vision layers of the generated checkpoint', '4')
    .option('--full', 'all 24 + 24 layers (BAAI/AltCLIP, ~3.4 GB)')
    .option('--dir <dir>', 'where to write the checkpoints', path.join(os.tmpdir(), 'altclip-weights-memory'))
    .option('--keep', 'keep the generated files')
    .parse(process.argv)
    .opts<{ layers: string; full?: boolean; dir: string; keep?: boolean }>();
  const layers = opts.full ? 24 : Number(opts.layers);
  const specs = weightSpecs({ ...LARGE, text: { ...LARGE.text, layers }, vision: { ...LARGE.vision, layers } });
  const size = specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1) * 4, 0);
  const st = path.join(opts.dir, 'safetensors');
  const bin = path.join(opts.dir, 'bin');
  fs.mkdirSync(st, { recursive: true });
  fs.mkdirSync(bin, { recursive: true });
  const gen = performance.now();
  if (fs.statSync(path.join(st, 'model.safetensors'), { throwIfNoEntry: false })?.size !== undefined && opts.keep) {
    console.log('reusing the generated files');
  } else {
    writeSafetensors(path.join(st, 'model.safetensors'), specs);
    writeTorchBin(path.join(bin, 'pytorch_model.bin'), specs);
  }
  console.log(`generated in ${((performance.now() - gen) / 1000).toFixed(1)} s`);

  const cpu = execFileSync('lscpu', { encoding: 'utf8' }).match(/Model name:\s*(.*)/)?.[1] ?? os.cpus()[0].model;
  const gb = (b: number) => (b / 1e9).toFixed(3);
  const base = measure('baseline', st);
  console.log(`machine: ${cpu}, ${os.cpus().length} cores, ${gb(os.totalmem())} GB RAM, node ${process.version}`);
  console.log(`checkpoint: ${specs.length} tensors, ${layers}+${layers} layers, weights ${gb(size)} GB (largest tensor ${gb(Math.max(...specs.map((s) => s.shape.reduce((a, b) => a * b, 1) * 4)))} GB)`);
  console.log(`baseline (node + tsx + weights module): peak RSS ${gb(base.peakRssBytes)} GB`);
  console.log('| file | step | peak RSS GB | peak / weights | (peak - baseline) / weights | s |');
  console.log('|---|---|---|---|---|---|');
  for (const [label, folder, file] of [['model.safetensors', st, 'model.safetensors'], ['pytorch_model.bin', bin, 'pytorch_model.bin']] as const) {
    const fileSize = fs.statSync(path.join(folder, file)).size;
    for (const mode of ['load', 'read']) {
      const m = measure(mode, folder);
      if (mode === 'read' && m.bytesRead !== size) throw new Error(`${label}: read ${m.bytesRead} bytes, expected ${size}`);
      console.log(`| ${label} (${gb(fileSize)} GB) | ${mode === 'load' ? 'loadWeights' : 'loadWeights + read every tensor'} | ${gb(m.peakRssBytes)} | ${(m.peakRssBytes / size).toFixed(3)} | ${((m.peakRssBytes - base.peakRssBytes) / size).toFixed(3)} | ${m.seconds.toFixed(2)} |`);
    }
  }
  if (!opts.keep) fs.rmSync(opts.dir, { recursive: true, force: true });
}

await main();
