// Command-line inputs: image paths (folders expand to the images inside), URLs, texts files.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IMAGE_EXTENSIONS, isHidden, isImageFileName } from '../image/formats.js';
import { CliError } from './errors.js';

export function isUrl(arg: string): boolean {
  return /^https?:\/\//i.test(arg);
}

/**
 * Image files and URLs, in order: a folder gives the images inside it (recursively, sorted by path;
 * other files, and hidden files and folders such as .git/, are left out), a missing path is an error.
 * Duplicates are dropped.
 */
export function expandImages(args: string[]): string[] {
  const out = new Set<string>();
  for (const arg of args) {
    if (isUrl(arg)) {
      out.add(arg);
      continue;
    }
    let stat: fs.Stats;
    try {
      stat = fs.statSync(arg);
    } catch {
      throw new CliError(`${arg}: no such file or folder`);
    }
    if (stat.isDirectory()) {
      const found = imagesIn(arg).sort();
      if (found.length === 0) throw new CliError(`${arg}: folder holds no images (${[...IMAGE_EXTENSIONS].join(' ')})`);
      for (const f of found) out.add(f);
    } else {
      out.add(arg);
    }
  }
  return [...out];
}

/** The image files under `dir`, not entering hidden folders nor following links to folders. */
function imagesIn(dir: string): string[] {
  const found: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (isHidden(entry.name)) continue;
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...imagesIn(p));
    else if (isImageFileName(entry.name) && isFile(p)) found.push(p);
  }
  return found;
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile(); // a link to a file counts
  } catch {
    return false; // a dangling link
  }
}

/** One text per line (UTF-8; a trailing \r is dropped; blank lines are skipped). */
export function readTextsFile(file: string, what = 'texts file'): string[] {
  let content: string;
  try {
    content = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(`${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? `is a folder, not a ${what}` : 'cannot be read'}`);
  }
  return content
    .replace(/^\uFEFF/, '')
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l.trim() !== '');
}
