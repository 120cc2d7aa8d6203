// The entry of an image-preparing thread (pool.ts). Plain JavaScript, so that it starts the same from
// the sources and from dist/: a worker thread does not inherit the tsx loader that `node --import tsx`
// gave the process, so for the .ts sources it registers tsx itself before loading the worker module.
import { workerData } from 'node:worker_threads';

const { module } = /** @type {{ module: string }} */ (workerData);
if (module.endsWith('.ts')) {
  const { register } = await import('tsx/esm/api');
  register();
}
await import(module);
