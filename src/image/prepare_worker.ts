// One image-preparing thread (started by pool.ts through prepare_thread.mjs): decode, then
// convert_to_rgb -> resize -> crop, the same functions the calling thread would run, so the bytes are
// the same. One job at a time: the pool never gives a thread a second image before the first is done.
import { parentPort } from 'node:worker_threads';
import { loadImage } from './decode.js';
import type { PrepareJob, PrepareReply } from './pool.js';
import { resizeAndCrop } from './transform.js';
import type { RawImage } from './types.js';

const port = parentPort!;
port.on('message', async (job: PrepareJob) => {
  let stage: 'decode' | 'transform' = 'decode';
  let decodedPixels = 0;
  try {
    // convert("RGB") drops alpha: the decoder can leave it out (same bytes, less memory)
    const decoded = await loadImage(job.input, job.cfg.doConvertRgb ? { ...job.decode, dropAlpha: true } : job.decode);
    stage = 'transform';
    decodedPixels = decoded.width * decoded.height;
    const image: RawImage = resizeAndCrop(decoded, job.cfg, job.keepGray);
    // A view of a larger buffer is copied, so that only its own bytes are moved to the caller.
    const data = image.data.byteOffset === 0 && image.data.byteLength === image.data.buffer.byteLength ? image.data : new Uint8Array(image.data);
    const reply: PrepareReply = { id: job.id, image: { ...image, data }, decodedPixels };
    port.postMessage(reply, [data.buffer as ArrayBuffer]);
  } catch (e) {
    const reply: PrepareReply = { id: job.id, error: (e as Error)?.message ?? String(e), stage, decodedPixels };
    port.postMessage(reply);
  }
});
