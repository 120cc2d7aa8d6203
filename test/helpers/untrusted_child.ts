// Child process of untrusted_runner.ts: loads each case (a possibly hostile file or folder) the way
// the library would, and reports per case on stdout: "S <i>" before, "R <i> <json>" after, written
// synchronously so that the parent can attribute a hang or a crash to the case that was running.
//
//   node --import tsx test/helpers/untrusted_child.ts CASES.json START
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AltCLIPConfig } from '../../src/config.js';
import { AltCLIPModel } from '../../src/models/altclip.js';
import { Tensor } from '../../src/tensor.js';
import { CLIPImageProcessor } from '../../src/image/index.js';
import { XLMRobertaTokenizer } from '../../src/tokenizer/index.js';
import { makeWeights, openSafetensors, openTorchBin } from '../../src/weights/index.js';
import type { Case, Outcome } from './untrusted_runner.js';

const FLOAT = new Set(['F32', 'F16', 'BF16', 'F64']);
const TEXTS = ['Hello world', 'ein Hund im Schnee', '一只猫', '  ', ''];

/** Loads one case; resolves to a description of what loaded, throws what the library threw. */
async function load(c: Case): Promise<string> {
  switch (c.kind) {
    case 'safetensors':
    case 'bin': {
      const tensors = c.kind === 'bin' ? openTorchBin(c.file) : openSafetensors(c.file);
      const weights = makeWeights(tensors);
      // every float tensor read as the model reads small ones (non-finite values are refused there)
      for (const [name, ref] of tensors) if (FLOAT.has(ref.dtype)) weights.readFloat32(name);
      return `${tensors.size} tensors`;
    }
    case 'spm':
    case 'tokenizer.json': {
      const tok = await XLMRobertaTokenizer.fromPretrained(c.file, { from: c.kind === 'spm' ? 'model' : 'json' });
      for (const text of TEXTS) {
        const ids = tok.encode(text);
        if (!ids.every((id) => Number.isInteger(id) && id >= 0 && id < tok.vocabSize)) throw new Error(`NOT CLEAN: encode(${JSON.stringify(text)}) gave ids outside [0, ${tok.vocabSize})`);
        tok.decode(ids);
      }
      return `vocabulary of ${tok.vocabSize}`;
    }
    case 'config':
      return `projection_dim ${(await AltCLIPConfig.fromPretrained(c.file)).projectionDim}`;
    case 'model': {
      // a model folder (config.json + weights): loaded, then both towers run once
      const model = await AltCLIPModel.fromPretrained(c.file, { graphCacheDir, threads: 1, workerThreads: false });
      try {
        const { textConfig: t, visionConfig: v } = model.config;
        const ids = new Tensor('int64', BigInt64Array.from([0, 100 % t.vocabSize, 2 % t.vocabSize], BigInt), [1, 3]);
        const text = await model.getTextFeatures({ inputIds: ids });
        if (v.imageSize > 1024) throw new Error('NOT CLEAN: image_size over 1024 passed the weights check');
        const pixels = new Tensor('float32', new Float32Array(v.numChannels * v.imageSize ** 2).fill(0.25), [1, v.numChannels, v.imageSize, v.imageSize]);
        const image = await model.getImageFeatures({ pixelValues: pixels });
        for (const out of [text, image]) if (!(out.data as Float32Array).every(Number.isFinite)) throw new Error('NOT CLEAN: non-finite features');
        return `features [${text.dims}] [${image.dims}]`;
      } finally {
        await model.dispose();
      }
    }
    case 'probe:hang':
      for (;;);
    case 'probe:memory': {
      const hold: Buffer[] = [];
      for (;;) hold.push(Buffer.alloc(16 << 20, 1)); // native memory, outside V8's heap cap
    }
    case 'probe:exit':
      process.exit(3);
    case 'image': {
      const processor = new CLIPImageProcessor();
      const { pixelValues } = await processor.preprocess(c.file);
      if (!(pixelValues.data as Float32Array).every(Number.isFinite)) throw new Error('NOT CLEAN: non-finite pixel values');
      return `pixel values [${pixelValues.dims}]`;
    }
  }
}

const [casesFile, start] = [process.argv[2]!, Number(process.argv[3] ?? 0)];
const graphCacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-untrusted-graphs-'));
process.on('exit', () => fs.rmSync(graphCacheDir, { recursive: true, force: true }));
const cases = JSON.parse(fs.readFileSync(casesFile, 'utf8')) as Case[];
for (let i = start; i < cases.length; i++) {
  fs.writeSync(1, `S ${i}\n`);
  let outcome: Outcome;
  try {
    outcome = { status: 'ok', message: await load(cases[i]) };
  } catch (e) {
    const err = e as Error;
    outcome = { status: err instanceof Error && !err.message.startsWith('NOT CLEAN') ? 'error' : 'crash', message: String(err?.message ?? err).slice(0, 4000), name: err?.name };
  }
  outcome.maxRssMb = Math.round(process.resourceUsage().maxRSS / 1024);
  fs.writeSync(1, `R ${i} ${JSON.stringify(outcome)}\n`);
}
