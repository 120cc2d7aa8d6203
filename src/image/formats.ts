// Which files a folder walk takes as images: the one rule shared by the CLI's inputs, the search
// index and the queue's planner.

/** Extensions taken from a folder: the formats the image decoder reads (decode.ts: sharp + bmp.ts). */
export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.bmp']);

/** Left out of folder walks: .git/, .DS_Store, ._photo.jpg (macOS resource forks), ... */
export function isHidden(name: string): boolean {
  return name.startsWith('.');
}

/** A file name a folder walk takes as an image (not hidden, an image extension). */
export function isImageFileName(name: string): boolean {
  if (isHidden(name)) return false;
  const dot = name.lastIndexOf('.');
  return dot > 0 && IMAGE_EXTENSIONS.has(name.slice(dot).toLowerCase());
}
