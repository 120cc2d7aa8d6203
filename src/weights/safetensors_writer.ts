// Writes safetensors files tensor by tensor (the header first, from the declared shapes), so a
// file larger than memory can be produced; the file appears under its name only once complete.
import * as fs from 'node:fs';

import { replaceAtomically } from '../fsutil.js';
import { byteSize, numelOf, type DType } from './dtype.js';

export interface TensorSpec {
  name: string;
  dtype: DType;
  shape: number[];
}

/**
 * Writes `specs` in order to `file`; `bytesOf(i)` returns tensor i's raw little-endian bytes.
 * Written through replaceAtomically (fsutil.ts), so readers never see a partial file.
 */
export function writeSafetensors(file: string, specs: TensorSpec[], bytesOf: (index: number) => Uint8Array,
  metadata: Record<string, string> = {}): void {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  const sizes = specs.map((s) => byteSize(s.dtype, numelOf(s.shape)!)!);
  specs.forEach((s, i) => {
    header[s.name] = { dtype: s.dtype, shape: s.shape, data_offsets: [offset, offset + sizes[i]!] };
    offset += sizes[i]!;
  });
  const json = JSON.stringify(header);
  const pad = (8 - (Buffer.byteLength(json, 'utf8') % 8)) % 8; // align the data to 8 bytes, as the Rust writer does
  const headerBytes = Buffer.from(json + ' '.repeat(pad), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));

  replaceAtomically(file, (tmp) => {
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeSync(fd, prefix);
      fs.writeSync(fd, headerBytes);
      specs.forEach((s, i) => {
        const bytes = bytesOf(i);
        if (bytes.byteLength !== sizes[i]) {
          throw new Error(`${file}: tensor ${s.name} has ${bytes.byteLength} bytes, its shape [${s.shape}] ${s.dtype} needs ${sizes[i]}`);
        }
        fs.writeSync(fd, bytes);
      });
    } finally {
      fs.closeSync(fd);
    }
  });
}
