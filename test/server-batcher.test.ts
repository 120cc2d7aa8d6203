// The dynamic batcher on its own, with a stand-in model run that records the batches it is given
// (an input's "embedding" is [its value]; a negative value fails as an undecodable input would).
// No timing is asserted: batches are forced full (maxBatchSize) or flushed by close().
import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { type BatcherOptions, ClosedError, DynamicBatcher, InputError, QueueFullError, type RunBatch } from '../src/server/batcher.js';

function recorder(options: { failModel?: boolean; gate?: Promise<void> } = {}) {
  const batches: number[][] = [];
  const run: RunBatch<number> = async function* (inputs, onError) {
    batches.push([...inputs]);
    await options.gate;
    if (options.failModel) throw new Error('model failed');
    const indices: number[] = [];
    inputs.forEach((x, i) => {
      if (x < 0) onError({ index: i, input: `<input #${i}>`, error: new Error(`input ${x} is not an image`) });
      else indices.push(i);
    });
    yield { indices, embeddings: indices.map((i) => Float32Array.of(inputs[i]!)) };
  };
  return { batches, run };
}

const opts = (o: Partial<BatcherOptions> = {}): BatcherOptions => ({ maxBatchSize: 4, maxWaitMs: 60_000, maxQueue: 100, concurrency: 1, ...o });

describe('DynamicBatcher', () => {
  it('merges inputs of several requests into full batches, in arrival order', async () => {
    const { batches, run } = recorder();
    const b = new DynamicBatcher(run, opts());
    const r1 = b.submit([1, 2, 3]);
    const r2 = b.submit([4, 5]);
    const r3 = b.submit([6, 7, 8]);
    const rows = await Promise.all([...r1, ...r2, ...r3]);
    assert.deepEqual(rows.map((r) => r[0]), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(batches, [[1, 2, 3, 4], [5, 6, 7, 8]]);
  });

  it('a partial batch runs after maxWaitMs (0: at once)', async () => {
    const { batches, run } = recorder();
    const b = new DynamicBatcher(run, opts({ maxWaitMs: 0 }));
    assert.deepEqual((await b.submit([9])[0]!)[0], 9);
    assert.deepEqual(batches, [[9]]);
  });

  it('a failed input rejects only its own promise; the rest of the batch is answered', async () => {
    const { batches, run } = recorder();
    const b = new DynamicBatcher(run, opts());
    const [a, bad, c, d] = b.submit([1, -2, 3, 4]);
    assert.deepEqual([(await a!)[0], (await c!)[0], (await d!)[0]], [1, 3, 4]);
    await assert.rejects(bad!, (e: unknown) => e instanceof InputError && e.input === 1 && /input -2 is not an image/.test(e.message));
    assert.equal(batches.length, 1);
  });

  it('a model failure rejects every input of that batch, and the next batch runs', async () => {
    const failing = recorder({ failModel: true });
    const b = new DynamicBatcher(failing.run, opts({ maxBatchSize: 2 }));
    const results = await Promise.allSettled(b.submit([1, 2]));
    assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected']);
    assert.match(String((results[0] as PromiseRejectedResult).reason), /model failed/);
  });

  it('the queue is bounded: a request that does not fit is refused whole (QueueFullError), nothing queued', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const { batches, run } = recorder({ gate });
    const b = new DynamicBatcher(run, opts({ maxBatchSize: 2, maxQueue: 3 }));
    const running = b.submit([1, 2]); // taken at once (full batch), held by the gate
    const waiting = b.submit([3, 4, 5]); // fills the queue
    assert.equal(b.depth, 3);
    assert.throws(() => b.submit([6]), (e: unknown) => e instanceof QueueFullError && e.retryAfterSeconds >= 1);
    assert.equal(b.depth, 3);
    open();
    await Promise.all([...running, ...waiting]);
    await b.close();
    assert.deepEqual(batches, [[1, 2], [3, 4], [5]]);
  });

  it('concurrency 2: a second batch starts while the first runs', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const { batches, run } = recorder({ gate });
    const b = new DynamicBatcher(run, opts({ maxBatchSize: 2, concurrency: 2 }));
    const all = b.submit([1, 2, 3, 4, 5, 6]);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(batches, [[1, 2], [3, 4]], 'two batches started, the third waits');
    open();
    await Promise.all(all);
    assert.deepEqual(batches, [[1, 2], [3, 4], [5, 6]]);
  });

  it('close() runs what is queued at once, resolves when idle, then refuses new inputs', async () => {
    const { batches, run } = recorder();
    const b = new DynamicBatcher(run, opts({ maxBatchSize: 64 }));
    const pending = b.submit([1, 2]);
    await b.close();
    assert.deepEqual((await Promise.all(pending)).map((r) => r[0]), [1, 2]);
    assert.deepEqual(batches, [[1, 2]]);
    assert.throws(() => b.submit([3]), ClosedError);
  });

  it('rejects bad options', () => {
    const { run } = recorder();
    assert.throws(() => new DynamicBatcher(run, opts({ maxBatchSize: 0 })), /maxBatchSize must be a positive integer/);
    assert.throws(() => new DynamicBatcher(run, opts({ maxWaitMs: -1 })), /maxWaitMs must be >= 0/);
    assert.throws(() => new DynamicBatcher(run, opts({ maxQueue: 1.5 })), /maxQueue must be a positive integer/);
    assert.throws(() => new DynamicBatcher(run, opts({ concurrency: 0 })), /concurrency must be a positive integer/);
  });
});
