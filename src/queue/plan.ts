// The coordinator's first step: command-line inputs -> shards. Image files and folders (walked as
// `altclip index` walks them), list files (.txt/.lst/.list: one path or http(s) URL a line; relative
// paths are relative to the list's folder) and loose URLs are concatenated in order and cut every
// `shardSize` inputs; each WebDataset .tar is a shard of its own. A shard's id is the sha256 of what
// it holds and of the model that embeds it, so the same command plans the same ids (resume) and a
// changed input list only changes the shards it touches.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { walkImages } from '../search/files.js';
import { isListFile, isTar } from './contract.js';

export const DEFAULT_SHARD_SIZE = 1000;

export interface PlannedShard {
  id: string;
  /** 0-based position in the plan, for messages */
  index: number;
  /** a tar's absolute path, or the shard's inputs (absolute paths and URLs) */
  source: { tar: string } | { items: string[] };
  /** inputs (a tar: unknown until read, 0) */
  count: number;
  /** how to name the shard in messages */
  label: string;
}

export function isUrl(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

export async function planShards(inputs: string[], options: { shardSize: number; model: string; dtype: string }): Promise<PlannedShard[]> {
  const { shardSize } = options;
  if (!Number.isInteger(shardSize) || shardSize < 1) throw new RangeError(`--shard-size must be a positive integer, got ${shardSize}`);
  if (inputs.length === 0) throw new Error('nothing to index: give image files, folders, list files, URLs or .tar shards');
  const tars: string[] = [];
  const items: string[] = [];
  const seen = new Set<string>();
  const push = (item: string) => {
    if (!seen.has(item)) items.push(item);
    seen.add(item);
  };
  for (const input of inputs) {
    if (isUrl(input)) {
      push(input);
      continue;
    }
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(input);
    } catch {
      throw new Error(`${input}: no such file or folder`);
    }
    if (st.isDirectory()) for (const f of await walkImages(input)) push(f.path);
    else if (isTar(input)) tars.push(path.resolve(input));
    else if (isListFile(input)) for (const line of await readList(input)) push(line);
    else push(path.resolve(input));
  }
  const shards: PlannedShard[] = [];
  const idOf = (what: unknown) =>
    createHash('sha256').update(JSON.stringify({ v: 1, model: options.model, dtype: options.dtype, what })).digest('hex').slice(0, 24);
  for (let start = 0; start < items.length; start += shardSize) {
    const chunk = items.slice(start, start + shardSize);
    shards.push({ id: idOf(chunk), index: shards.length, source: { items: chunk }, count: chunk.length, label: `inputs ${start + 1}-${start + chunk.length} (${chunk[0]} …)` });
  }
  for (const tar of tars) {
    const st = await fs.promises.stat(tar);
    shards.push({ id: idOf({ tar, size: st.size, mtime: st.mtimeMs }), index: shards.length, source: { tar }, count: 0, label: tar });
  }
  if (shards.length === 0) throw new Error(`${inputs[0]}: no images found`);
  return shards;
}

/** The paths and URLs of a list file (blank lines and lines starting with # skipped). */
async function readList(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`${file}: cannot read the list (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const dir = path.dirname(path.resolve(file));
  return text
    .replace(/^\uFEFF/, '')
    .split('\n')
    .map((l) => l.replace(/\r$/, '').trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => (isUrl(l) ? l : path.isAbsolute(l) ? path.normalize(l) : path.resolve(dir, l)));
}
