// Cost of scanning a whole checkpoint for NaN / infinity (weights/index.ts findNonFinite), the
// check issue 18 asks for where a format has no checksum; and of CRC-32 over the same bytes.
//
//   node --import tsx bench/nonfinite_scan.ts DIR   (a folder with model.safetensors, e.g. from
//                                                    bench/generate_checkpoint.ts)
import * as fs from 'node:fs';
import * as os from 'node:os';
import { loadWeights, findNonFinite } from '../src/weights/index.js';
import { crc32 } from '../src/weights/zip.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: bench/nonfinite_scan.ts DIR');
const weights = await loadWeights(dir);
const bytes = [...weights.tensors.values()].reduce((n, t) => n + t.byteLength, 0);
console.log(`${os.cpus()[0]!.model}; ${weights.tensors.size} tensors, ${(bytes / 1e9).toFixed(2)} GB; shared machine`);
for (let run = 0; run < 3; run++) {
  let t = performance.now();
  const bad = findNonFinite(weights);
  const scan = performance.now() - t;
  t = performance.now();
  const buf = Buffer.allocUnsafe(16 << 20);
  for (const file of weights.files) {
    const fd = fs.openSync(file, 'r');
    let c = 0;
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) c = crc32(buf.subarray(0, n), c);
    fs.closeSync(fd);
  }
  const crc = performance.now() - t;
  console.log(`run ${run}: non-finite scan ${(scan / 1000).toFixed(2)} s (${(bytes / scan / 1e6).toFixed(2)} GB/s, ${bad.length} bad), `
    + `CRC-32 of the same files ${(crc / 1000).toFixed(2)} s (${(bytes / crc / 1e6).toFixed(2)} GB/s)`);
}
