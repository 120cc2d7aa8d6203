// The .npy writer: byte-identical to numpy.save for a float32 C-order matrix, appendable in place.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { NpyAppender, npyHeader, readNpyHeader } from '../src/cli/npy.js';

// python3 -c "import numpy as np, io, base64; b = io.BytesIO();
//   np.save(b, np.array([[1, -2.5, 3], [0.25, 1e-8, -7]], dtype='<f4')); print(base64.b64encode(b.getvalue()).decode())"
// (numpy 2.4.6; numpy 1.x writes the same bytes for format version 1.0)
const NUMPY_SAVE_2x3 =
  'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDMpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAIA/AAAgwAAAQEAAAIA+d8wrMgAA4MA=';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-npy-'));

test('a file written in two appends equals numpy.save of the matrix', () => {
  const file = path.join(tmp(), 'm.npy');
  const w = NpyAppender.create(file, 3);
  w.append(Float32Array.of(1, -2.5, 3));
  w.append(Float32Array.of(0.25, 1e-8, -7));
  w.close();
  assert.deepEqual(fs.readFileSync(file), Buffer.from(NUMPY_SAVE_2x3, 'base64'));
  assert.deepEqual(readNpyHeader(file), { rows: 2, cols: 3, dataOffset: 128 });
});

test('the header is 128 bytes, 64-aligned data, for any row count', () => {
  for (const rows of [0, 1, 123456, 2 ** 40]) {
    const h = npyHeader(rows, 1024);
    assert.equal(h.length, 128);
    assert.equal(h.readUInt16LE(8) + 10, 128);
    assert.equal(h[127], 0x0a);
    assert.match(h.toString('latin1', 10), new RegExp(`'shape': \\(${rows}, 1024\\), \\} +\\n$`));
  }
});

test('reopening keeps whole rows only, and at most keepRows', () => {
  const file = path.join(tmp(), 'm.npy');
  const w = NpyAppender.create(file, 2);
  w.append(Float32Array.of(1, 2, 3, 4, 5, 6));
  w.close();
  fs.appendFileSync(file, Buffer.from([1, 2, 3])); // a row cut short
  let r = NpyAppender.open(file);
  assert.equal(r.rows, 3);
  r.close();
  assert.equal(fs.statSync(file).size, 128 + 3 * 8);
  r = NpyAppender.open(file, 2);
  r.append(Float32Array.of(9, 9));
  r.close();
  const bytes = fs.readFileSync(file).subarray(128);
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  assert.deepEqual([...data], [1, 2, 3, 4, 9, 9]);
  assert.equal(readNpyHeader(file).rows, 3);
});

test('files that are not 2-D float32 .npy are refused with the file name', () => {
  const dir = tmp();
  const bad = path.join(dir, 'x.npy');
  fs.writeFileSync(bad, 'hello');
  assert.throws(() => readNpyHeader(bad), /x\.npy: not a \.npy file/);
  const f8 = Buffer.from(npyHeader(1, 1).toString('latin1').replace("'<f4'", "'<f8'"), 'latin1');
  fs.writeFileSync(bad, f8);
  assert.throws(() => readNpyHeader(bad), /not a 2-D float32/);
});
