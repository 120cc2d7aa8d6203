// Tokenizer benchmark: load time of an XLM-R-sized (250,000-piece) sentencepiece model and
// single-thread tokenization throughput on mixed-language text, against the Rust `tokenizers`
// library (npm binding @anush008/tokenizers) on the same files and text, in the same run.
//
//   node --import tsx bench/tokenizer.ts [--pieces 250000] [--mb 2]
//
// The model is synthetic (generated here, deterministic): a multilingual "lexicon" of words in 12
// scripts, Zipf-distributed sentences, pieces = the most frequent characters / word prefixes /
// substrings with log-frequency scores, and the nmt_nfkc precompiled charsmap of the test fixture.
// The same vocabulary is written as sentencepiece.bpe.model and as tokenizer.json (fairseq layout).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { XLMRobertaTokenizer } from '../src/tokenizer/index.js';
import { encodeSentencePieceModel, parseSentencePieceModel } from '../src/tokenizer/sentencepiece_model.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, '..', 'test', 'fixtures');
const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const PIECES = arg('pieces', 250_000);
const TEXT_MB = arg('mb', 2);
const keepIndex = process.argv.indexOf('--keep');
/** --keep DIR: write the generated files (model, tokenizer.json, text.txt) there and keep them. */
const KEEP = keepIndex >= 0 ? path.resolve(process.argv[keepIndex + 1]) : null;

function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(1234);
const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => String.fromCodePoint(a + i));

// ---- synthetic multilingual lexicon and text ----
const scripts: { chars: string[]; len: [number, number]; spaces: boolean }[] = [
  { chars: range(0x61, 0x7a), len: [2, 9], spaces: true }, // Latin
  { chars: [...range(0x61, 0x7a), ...range(0xe0, 0xfc)], len: [2, 10], spaces: true }, // Latin + accents
  { chars: range(0x430, 0x44f), len: [2, 10], spaces: true }, // Cyrillic
  { chars: range(0x3b1, 0x3c9), len: [2, 9], spaces: true }, // Greek
  { chars: range(0x627, 0x64a), len: [2, 8], spaces: true }, // Arabic
  { chars: range(0x5d0, 0x5ea), len: [2, 7], spaces: true }, // Hebrew
  { chars: range(0x915, 0x94d), len: [2, 8], spaces: true }, // Devanagari
  { chars: range(0xe01, 0xe3a), len: [3, 12], spaces: false }, // Thai
  { chars: range(0xac00, 0xac00 + 1500), len: [1, 4], spaces: true }, // Hangul
  { chars: range(0x4e00, 0x4e00 + 3000), len: [1, 3], spaces: false }, // CJK
  { chars: range(0x3041, 0x3096), len: [1, 5], spaces: false }, // Hiragana
  { chars: range(0x30a1, 0x30fa), len: [2, 6], spaces: false }, // Katakana
];
const lexicon = scripts.map((s) =>
  Array.from({ length: 6000 }, () => {
    const n = s.len[0] + Math.floor(rand() * (s.len[1] - s.len[0] + 1));
    let w = '';
    for (let i = 0; i < n; i++) w += pick(s.chars);
    return w;
  }),
);
/** Zipf-ish: small indices much more often. */
const zipf = (n: number) => Math.min(n - 1, Math.floor(Math.exp(rand() * Math.log(n + 1))) - 1);
function sentence(): string {
  const s = Math.floor(rand() * scripts.length);
  const words = Array.from({ length: 4 + Math.floor(rand() * 12) }, () => lexicon[s][zipf(lexicon[s].length)]);
  return words.join(scripts[s].spaces ? ' ' : rand() < 0.3 ? ' ' : '') + pick(['.', ',', '!', '?', '', '']);
}

// ---- vocabulary: frequent characters, ▁word prefixes and substrings ----
function buildVocab(): { pieces: string[]; scores: number[] } {
  const counts = new Map<string, number>();
  const add = (p: string, c: number) => counts.set(p, (counts.get(p) ?? 0) + c);
  for (let s = 0; s < scripts.length; s++) {
    for (let i = 0; i < lexicon[s].length; i++) {
      const w = [...lexicon[s][i]];
      const freq = 1000 / (i + 1) + 1;
      for (let a = 0; a < w.length; a++) {
        for (let b = a + 1; b <= Math.min(w.length, a + 6); b++) {
          const sub = w.slice(a, b).join('');
          add(sub, freq / (b - a));
          if (a === 0) add('\u2581' + sub, (2 * freq) / (b - a));
        }
      }
    }
  }
  for (const s of scripts) for (const c of s.chars) add(c, 1e6);
  for (const c of '0123456789.,!?;:()[]"\'-/') add(c, 1e6);
  add('\u2581', 1e7);
  const sorted = [...counts.entries()].sort((x, y) => y[1] - x[1]).slice(0, PIECES - 3);
  // Pad with rare filler pieces when the lexicon has fewer distinct substrings than requested.
  for (let i = 0; sorted.length < PIECES - 3; i++) sorted.push([`\u2581zz${i.toString(36)}`, 1e-3]);
  const total = sorted.reduce((a, [, c]) => a + c, 0);
  return { pieces: sorted.map(([p]) => p), scores: sorted.map(([, c]) => Math.log(c / total)) };
}

// ---- tokenizer.json writer (the .model is written by encodeSentencePieceModel) ----
function writeTokenizerJson(pieces: string[], scores: number[], charsmap: Uint8Array): string {
  const template = JSON.parse(fs.readFileSync(path.join(fixtures, 'tokenizer', 'tokenizer.json'), 'utf8'));
  const n = pieces.length;
  template.added_tokens.find((t: { content: string }) => t.content === '<mask>').id = n + 1;
  template.normalizer.normalizers[0].precompiled_charsmap = Buffer.from(charsmap).toString('base64');
  template.model.vocab = [
    ['<s>', 0],
    ['<pad>', 0],
    ['</s>', 0],
    ['<unk>', 0],
    ...pieces.slice(3).map((p, i) => [p, scores[i + 3]]),
    ['<mask>', 0],
  ];
  return JSON.stringify(template);
}

// ---- measurement helpers ----
// Wall time, and CPU time of this process (user + system, all threads: the Rust binding encodes on
// a libuv worker thread). On a busy machine the CPU time is the steadier of the two.
interface Time {
  wall: number;
  cpu: number;
}
const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const start = () => ({ wall: performance.now(), cpu: cpuNow() });
const since = (t0: Time): Time => ({ wall: performance.now() - t0.wall, cpu: cpuNow() - t0.cpu });
const ms = (t0: number) => performance.now() - t0;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const medianTime = (ts: Time[]): Time => ({ wall: median(ts.map((t) => t.wall)), cpu: median(ts.map((t) => t.cpu)) });
const fmt = (x: number, d = 1) => x.toFixed(d);
const fmtTime = (t: Time) => `${fmt(t.wall)} ms wall / ${fmt(t.cpu)} ms CPU`;

async function main(): Promise<void> {
  const dir = KEEP ?? fs.mkdtempSync(path.join(os.tmpdir(), 'tokenizer-bench-'));
  fs.mkdirSync(dir, { recursive: true });
  try {
    const tGen = performance.now();
    const { pieces: vocabPieces, scores: vocabScores } = buildVocab();
    const fixtureModel = parseSentencePieceModel(fs.readFileSync(path.join(fixtures, 'tokenizer', 'sentencepiece.bpe.model')), 'fixture');
    const charsmap = fixtureModel.normalizer.precompiledCharsmap;
    const pieces = ['<unk>', '<s>', '</s>', ...vocabPieces];
    const scores = [0, 0, 0, ...vocabScores];
    const types = [2, 3, 3, ...vocabPieces.map(() => 1)];
    const modelFile = path.join(dir, 'sentencepiece.bpe.model');
    fs.writeFileSync(
      modelFile,
      encodeSentencePieceModel({
        pieces: pieces.map((piece, i) => ({ piece, score: scores[i], type: types[i] })),
        normalizer: { name: 'nmt_nfkc', precompiledCharsmap: charsmap },
      }),
    );
    const jsonDir = path.join(dir, 'json');
    fs.mkdirSync(jsonDir);
    const jsonFile = path.join(jsonDir, 'tokenizer.json');
    fs.writeFileSync(jsonFile, writeTokenizerJson(pieces, scores, charsmap));
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 512 }));

    // Text: synthetic sentences plus every fixture string (real text in ~25 languages).
    const fixtureTexts: string[] = JSON.parse(fs.readFileSync(path.join(fixtures, 'tokenizer_cases.json'), 'utf8'))
      .cases.filter((c: { kind: string }) => c.kind === 'single')
      .map((c: { text: string }) => c.text);
    const lines: string[] = [];
    let bytes = 0;
    while (bytes < TEXT_MB * 1e6) {
      const line = rand() < 0.1 ? pick(fixtureTexts) : sentence() + ' ' + sentence();
      lines.push(line);
      bytes += Buffer.byteLength(line) + 1;
    }
    const doc = lines.join('\n');
    if (KEEP) fs.writeFileSync(path.join(dir, 'text.txt'), doc);
    const chars = [...doc].length;
    console.log(`generated in ${fmt(ms(tGen) / 1000)} s: ${PIECES} pieces, .model ${fmt(fs.statSync(modelFile).size / 1e6)} MB, ` +
      `tokenizer.json ${fmt(fs.statSync(jsonFile).size / 1e6)} MB; text ${lines.length} lines, ${chars} chars, ${fmt(bytes / 1e6, 2)} MB UTF-8`);

    // ---- load ----
    const load = async (from: 'model' | 'json') => {
      const t0 = start();
      const tok = await XLMRobertaTokenizer.fromPretrained(from === 'model' ? dir : jsonDir, { from });
      const parse = since(t0);
      const t1 = start();
      tok.prepare();
      return { tok, parse, build: since(t1), total: since(t0) };
    };
    const loads: Record<string, { parse: Time; build: Time; total: Time }[]> = { model: [], json: [] };
    let ours!: XLMRobertaTokenizer;
    for (let i = 0; i < 5; i++) {
      for (const from of ['model', 'json'] as const) {
        const r = await load(from);
        loads[from].push(r);
        if (from === 'model') ours = r.tok;
      }
    }
    for (const from of ['model', 'json']) {
      const l = loads[from];
      console.log(`ours load from ${from === 'model' ? '.model' : 'tokenizer.json'} (parse + root of the trie): ` +
        `first ${fmtTime(l[0].total)} (parse ${fmt(l[0].parse.wall)} + trie ${fmt(l[0].build.wall)} wall), ` +
        `median of 5 ${fmtTime(medianTime(l.map((x) => x.total)))}`);
    }

    // ---- throughput (single thread) ----
    const rate = (t: Time) =>
      `${fmtTime(t)} = ${fmt(bytes / 1e3 / t.wall, 2)} MB/s wall, ${fmt(bytes / 1e3 / t.cpu, 2)} MB/s CPU ` +
      `(${fmt(chars / 1e3 / t.cpu, 2)} M chars/s CPU)`;
    // The first pass also grows the lazily built trie for this text.
    const firstPass = start();
    for (const l of lines) ours.encode(l);
    console.log(`ours encode, line by line, first pass (builds the trie as it goes): ${rate(since(firstPass))}`);
    const timeIt = (f: () => void, reps: number) => {
      const times: Time[] = [];
      for (let i = 0; i < reps; i++) {
        const t0 = start();
        f();
        times.push(since(t0));
      }
      return medianTime(times);
    };
    const oursLines = timeIt(() => {
      for (const l of lines) ours.encode(l);
    }, 3);
    const oursDoc = timeIt(() => ours.encode(doc), 3);
    console.log(`ours encode, line by line: ${rate(oursLines)}`);
    console.log(`ours encode, one document: ${rate(oursDoc)}`);

    // ---- Rust tokenizers through the npm binding ----
    let rust: typeof import('@anush008/tokenizers') | null = null;
    try {
      rust = await import('@anush008/tokenizers');
    } catch (e) {
      console.log(`Rust tokenizers binding not available (${(e as Error).message}); skipping the comparison`);
    }
    if (rust) {
      const rLoads: Time[] = [];
      let rt!: InstanceType<typeof rust.Tokenizer>;
      for (let i = 0; i < 3; i++) {
        const t0 = start();
        rt = rust.Tokenizer.fromFile(jsonFile);
        rLoads.push(since(t0));
      }
      console.log(`rust load from tokenizer.json: first ${fmtTime(rLoads[0])}, median of 3 ${fmtTime(medianTime(rLoads))}`);
      const rustTime = async (f: () => Promise<void>, reps: number) => {
        await f();
        const times: Time[] = [];
        for (let i = 0; i < reps; i++) {
          const t0 = start();
          await f();
          times.push(since(t0));
        }
        return medianTime(times);
      };
      // encode() runs on a libuv worker; awaiting each call keeps one encode in flight at a time.
      const rustLines = await rustTime(async () => {
        for (const l of lines) await rt.encode(l);
      }, 3);
      const rustDoc = await rustTime(async () => {
        await rt.encode(doc);
      }, 3);
      console.log(`rust encode, line by line: ${rate(rustLines)}`);
      console.log(`rust encode, one document: ${rate(rustDoc)}`);
      const ratio = (r: Time, o: Time) => `${fmt(r.wall / o.wall, 2)}x wall, ${fmt(r.cpu / o.cpu, 2)}x CPU`;
      console.log(`ours vs rust throughput: lines ${ratio(rustLines, oursLines)}; document ${ratio(rustDoc, oursDoc)}`);
      console.log(`ours (.model) vs rust (tokenizer.json) load, medians: ${ratio(medianTime(rLoads), medianTime(loads.model.map((l) => l.total)))} faster`);
      // Where the ids differ, compare the total log-probability of the two segmentations.
      const scoreOf = (ids: number[]) => ids.reduce((a, id) => a + (id >= 4 && id - 1 < scores.length ? scores[id - 1] : 0), 0);
      let same = 0;
      let ties = 0;
      for (const l of lines) {
        const theirs = (await rt.encode(l)).getIds();
        const mine = ours.encode(l);
        if (JSON.stringify(theirs) === JSON.stringify(mine)) same++;
        else if (Math.abs(scoreOf(theirs) - scoreOf(mine)) < 1e-3) ties++;
      }
      console.log(`identical ids on ${same}/${lines.length} lines; ${ties} of the ${lines.length - same} others are ` +
        'segmentations with the same total score (ties: sentencepiece compares in float32/double, the Rust Unigram in f64)');
    }

    // ---- the test fixture's real sentencepiece model (4,000 pieces) on real multilingual text ----
    const realLines: string[] = [];
    for (let b = 0; b < 1e6; ) {
      const line = fixtureTexts[realLines.length % fixtureTexts.length];
      realLines.push(line);
      b += Buffer.byteLength(line) + 1;
    }
    const realBytes = realLines.reduce((a, l) => a + Buffer.byteLength(l) + 1, 0);
    const fixtureTok = await XLMRobertaTokenizer.fromPretrained(path.join(fixtures, 'tokenizer'), { from: 'model' });
    for (const l of realLines) fixtureTok.encode(l);
    const realRate = (t: Time) => `${fmtTime(t)} = ${fmt(realBytes / 1e3 / t.wall, 2)} MB/s wall, ${fmt(realBytes / 1e3 / t.cpu, 2)} MB/s CPU`;
    const oursReal = timeIt(() => {
      for (const l of realLines) fixtureTok.encode(l);
    }, 3);
    console.log(`fixture model (4,000 pieces), the 117 fixture texts repeated (${fmt(realBytes / 1e6, 2)} MB), line by line:`);
    console.log(`  ours: ${realRate(oursReal)}`);
    if (rust) {
      const rt = rust.Tokenizer.fromFile(path.join(fixtures, 'tokenizer', 'tokenizer.json'));
      for (const l of realLines.slice(0, 1000)) await rt.encode(l);
      const times: Time[] = [];
      for (let i = 0; i < 3; i++) {
        const t0 = start();
        for (const l of realLines) await rt.encode(l);
        times.push(since(t0));
      }
      const rustReal = medianTime(times);
      console.log(`  rust: ${realRate(rustReal)}`);
      console.log(`  ours vs rust: ${fmt(rustReal.wall / oursReal.wall, 2)}x wall, ${fmt(rustReal.cpu / oursReal.cpu, 2)}x CPU`);
    }
  } finally {
    if (!KEEP) fs.rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`machine: ${os.cpus()[0].model}, ${os.cpus().length} cores, node ${process.version}`);
await main();
