// @ts-check
// Imported before onnxruntime-node everywhere the package loads it (tensor.ts, session.ts,
// session_thread.mjs). onnxruntime's telemetry, when its first session creates the runtime
// environment, runs a regex over /proc/self/cmdline; with a command line over ~15 KB (`altclip embed`
// with a few hundred files) the regex recurses until the thread stack overflows and the process dies
// with SIGSEGV and no message. ORT_DISABLE_TELEMETRY=1 skips it. Set on the main thread, it is in the
// process environment that native code reads, session worker threads included (a worker's
// process.env is a copy that native code never sees: so the main thread must have set it first).
import { isMainThread } from 'node:worker_threads';

if (isMainThread && process.env.ORT_DISABLE_TELEMETRY === undefined) process.env.ORT_DISABLE_TELEMETRY = '1';
