// The files an index covers: folders walked for images (hidden files and folders skipped), each file's
// size + mtime (the cheap change test) and sha256 (the content test that confirms it).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { IMAGE_EXTENSIONS, isHidden, isImageFileName } from '../image/formats.js';

export { IMAGE_EXTENSIONS, isHidden };

export interface FileState {
  /** Absolute, resolved path (path.resolve: symlinks are not followed, so each link is its own entry). */
  path: string;
  size: number;
  /** fs.Stats.mtimeMs */
  mtime: number;
}

/** A folder or file that exists (or may) but could not be read: what is under it is not known to be gone. */
export interface UnreadablePath {
  path: string;
  /** e.g. "unreadable (EACCES)" */
  reason: string;
}

/** Image files under `folder`, recursively, sorted; names starting with "." are skipped, folders too. */
export async function walkImages(folder: string): Promise<FileState[]> {
  return (await walkImagesReport(folder)).files;
}

/** The root folder itself cannot be read (its error code in `code`). */
export class UnreadableFolderError extends Error {
  override name = 'UnreadableFolderError';
  constructor(message: string, readonly code: string) {
    super(message);
  }
}

/**
 * walkImages, and the subfolders and files that could not be read (a subfolder or file that vanished
 * meanwhile, ENOENT, is simply gone). Throws UnreadableFolderError if `folder` cannot be read.
 */
export async function walkImagesReport(folder: string): Promise<{ files: FileState[]; unreadable: UnreadablePath[] }> {
  const root = path.resolve(folder);
  const out: FileState[] = [];
  const unreadable: UnreadablePath[] = [];
  const visit = async (dir: string): Promise<void> => {
    let entries: fs.Dirent[];
    try {
      entries = await fs.promises.readdir(dir, { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      if (dir === root) throw new UnreadableFolderError(`${folder}: cannot read the folder (${code})`, code);
      if (code !== 'ENOENT') unreadable.push({ path: dir, reason: `unreadable (${code})` });
      return;
    }
    for (const e of entries) {
      if (isHidden(e.name)) continue;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await visit(p);
      else if ((e.isFile() || e.isSymbolicLink()) && isImageFileName(e.name)) {
        try {
          const st = await fs.promises.stat(p);
          if (st.isFile()) out.push({ path: p, size: st.size, mtime: st.mtimeMs });
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
          // a dangling symlink or a file removed meanwhile is gone; anything else is not known to be
          if (code !== 'ENOENT') unreadable.push({ path: p, reason: `unreadable (${code})` });
        }
      }
    }
  };
  await visit(root);
  return { files: out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)), unreadable };
}

/** size and mtime of a regular file (following a symlink), or undefined if there is none. */
export async function statFile(file: string): Promise<FileState | undefined> {
  try {
    const st = await fs.promises.stat(file);
    return st.isFile() ? { path: path.resolve(file), size: st.size, mtime: st.mtimeMs } : undefined;
  } catch {
    return undefined;
  }
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Whether `file` lies inside `folder` (both absolute). */
export function isInside(file: string, folder: string): boolean {
  const rel = path.relative(folder, file);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}
