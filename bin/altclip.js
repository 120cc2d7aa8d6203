#!/usr/bin/env node
// The installed `altclip` command: runs the compiled CLI (npm run build writes dist/).
import { existsSync } from 'node:fs';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('altclip: error: the package is not built (dist/src/cli/main.js is missing); run "npm run build"\n');
  process.exit(1);
}
await import(main.href);
