// The benchmark's inputs, shared by our model and the PyTorch baseline: 8 fixture images through the
// golden image processor (test/fixtures/image_processor/pixel_values.safetensors), and 32 fixture
// prompts of 8-16 tokens with the golden tokenizer's ids (test/fixtures/tokenizer_cases.json), padded
// on the right with id 1 / mask 0. Using the goldens keeps the timings independent of our processors.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors } from './safetensors_io.js';

export const IMAGES = ['cat', 'coffee', 'gray_portrait', 'rgba_transparent', 'wide', 'tall', 'large', 'palette'];
const PAD = 1;

interface TokenizerCase { id: string; kind: string; text: string; input_ids: number[]; num_tokens: number }

export function writeInputs(fixtures: string, file: string): { texts: string[] } {
  const pv = readSafetensors(join(fixtures, 'image_processor', 'pixel_values.safetensors'), IMAGES.map((n) => `pixel_values/${n}`));
  const size = 3 * 224 * 224;
  const pixels = new Float32Array(IMAGES.length * size);
  IMAGES.forEach((n, i) => pixels.set(pv.get(`pixel_values/${n}`)!.data as Float32Array, i * size));

  const cases = (JSON.parse(readFileSync(join(fixtures, 'tokenizer_cases.json'), 'utf8')) as { cases: TokenizerCase[] }).cases;
  // Prompts of 8-16 tokens without <unk> (id 3), in file order.
  const prompts = cases.filter((c) => c.kind === 'single' && c.num_tokens >= 8 && c.num_tokens <= 16 && !c.input_ids.includes(3)).slice(0, 32);
  if (prompts.length < 32) throw new Error(`${fixtures}/tokenizer_cases.json: only ${prompts.length} prompts of 8-16 tokens`);
  const len = Math.max(...prompts.map((p) => p.input_ids.length));
  const ids = new BigInt64Array(32 * len).fill(BigInt(PAD));
  const mask = new BigInt64Array(32 * len);
  prompts.forEach((p, i) => p.input_ids.forEach((id, j) => { ids[i * len + j] = BigInt(id); mask[i * len + j] = 1n; }));

  writeSafetensors(file, {
    pixel_values: { dtype: 'F32', shape: [IMAGES.length, 3, 224, 224], data: pixels },
    input_ids: { dtype: 'I64', shape: [32, len], data: ids },
    attention_mask: { dtype: 'I64', shape: [32, len], data: mask },
  });
  return { texts: prompts.map((p) => p.text) };
}

/**
 * Every fixture input, for the q8 accuracy check (not timed): the golden pixel values of every
 * fixture image, and every single-text tokenizer case (longer ones cut to 512 tokens as
 * truncation=True does: the first 511 and </s>), padded on the right.
 */
export function writeAllInputs(fixtures: string, file: string): { images: number; texts: number } {
  const images = readdirSync(join(fixtures, 'images')).map((f) => f.replace(/\.[^.]+$/, '')).sort();
  const names = images.map((n) => `pixel_values/${n}`);
  const pv = readSafetensors(join(fixtures, 'image_processor', 'pixel_values.safetensors'), names);
  const missing = names.filter((n) => !pv.has(n));
  if (missing.length) throw new Error(`pixel_values.safetensors lacks ${missing.join(', ')}`);
  const size = 3 * 224 * 224;
  const pixels = new Float32Array(names.length * size);
  names.forEach((n, i) => pixels.set(pv.get(n)!.data as Float32Array, i * size));

  const cases = (JSON.parse(readFileSync(join(fixtures, 'tokenizer_cases.json'), 'utf8')) as { cases: TokenizerCase[] }).cases;
  const MAX = 512, EOS = 2;
  const texts = cases.filter((c) => c.kind === 'single' && Array.isArray(c.input_ids) && c.input_ids.length >= 2)
    .map((c) => (c.input_ids.length > MAX ? [...c.input_ids.slice(0, MAX - 1), EOS] : c.input_ids));
  const len = Math.max(...texts.map((t) => t.length));
  const ids = new BigInt64Array(texts.length * len).fill(BigInt(PAD));
  const mask = new BigInt64Array(texts.length * len);
  texts.forEach((t, i) => t.forEach((id, j) => { ids[i * len + j] = BigInt(id); mask[i * len + j] = 1n; }));
  writeSafetensors(file, {
    pixel_values: { dtype: 'F32', shape: [names.length, 3, 224, 224], data: pixels },
    input_ids: { dtype: 'I64', shape: [texts.length, len], data: ids },
    attention_mask: { dtype: 'I64', shape: [texts.length, len], data: mask },
  });
  return { images: names.length, texts: texts.length };
}
