// @ts-check
// The worker thread that owns one onnxruntime session (session.ts starts it: see ThreadSession).
//
// onnxruntime-node creates sessions and runs them synchronously on the calling thread, so sessions
// created on the main thread load one after the other (prepacking the full-size towers' weights
// takes ~1.5 s each) and block the event loop while they run. One thread per session lets the two
// towers load at the same time and keeps the event loop free.
//
// Plain JavaScript (type-checked through JSDoc) so that the thread starts the same way from the
// sources under tsx and from dist/: Node 20 does not apply tsx's loader to a worker's entry point.
//
// Messages in:  { id, op: 'create', model: string | Uint8Array, options }
//               { id, op: 'run', feeds: { [name]: WireTensor }, fetch: string[] }
//               { id, op: 'release' }
// Messages out: { id, result } or { id, error: { message, stack } }; run results are WireTensors
// whose buffers are transferred, not copied.
import './ort_env.mjs'; // before onnxruntime-node: see there
import { parentPort } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

/** @typedef {{ type: ort.Tensor.Type, dims: readonly number[], data: ort.Tensor.DataType }} WireTensor */

/** @type {ort.InferenceSession | undefined} */
let session;

/** @param {any} msg */
async function handle(msg) {
  switch (msg.op) {
    case 'create':
      session = await ort.InferenceSession.create(msg.model, msg.options);
      return { result: { inputNames: session.inputNames, outputNames: session.outputNames } };
    case 'run': {
      if (!session) throw new Error('no session');
      /** @type {Record<string, ort.Tensor>} */
      const feeds = {};
      for (const [name, t] of Object.entries(/** @type {Record<string, WireTensor>} */ (msg.feeds))) {
        feeds[name] = new ort.Tensor(/** @type {any} */ (t.type), /** @type {any} */ (t.data), t.dims);
      }
      const out = await session.run(feeds, msg.fetch);
      /** @type {Record<string, WireTensor>} */
      const result = {};
      /** @type {ArrayBuffer[]} */
      const transfer = [];
      for (const [name, v] of Object.entries(out)) {
        const t = /** @type {ort.Tensor} */ (v);
        const data = t.data;
        result[name] = { type: t.type, dims: t.dims, data };
        // a buffer the tensor has to itself moves; a shared one (a view into a pool) is copied
        if (ArrayBuffer.isView(data) && data.buffer instanceof ArrayBuffer && data.byteOffset === 0
          && data.byteLength === data.buffer.byteLength && !transfer.includes(data.buffer)) transfer.push(data.buffer);
      }
      return { result, transfer };
    }
    case 'release':
      await session?.release();
      session = undefined;
      return { result: null };
    default:
      throw new Error(`unknown request ${msg.op}`);
  }
}

const port = /** @type {import('node:worker_threads').MessagePort} */ (parentPort);
port.on('message', (msg) => {
  handle(msg).then(
    ({ result, transfer }) => port.postMessage({ id: msg.id, result }, transfer ?? []),
    (e) => port.postMessage({ id: msg.id, error: { message: e instanceof Error ? e.message : String(e), stack: e?.stack } }),
  );
});
