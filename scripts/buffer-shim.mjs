// Injected into the browser bundle (scripts/build-web.mjs): the shared sources use Node's global
// Buffer for byte reads (readUInt32LE, utf8 / base64); the `buffer` package is that API for browsers.
export { Buffer } from 'buffer';
