// The `altclip` command. Errors end as one line on stderr and exit code 1 (2: some inputs skipped);
// ALTCLIP_DEBUG=1 prints stack traces too.
import * as fs from 'node:fs';
import { Command, CommanderError } from 'commander';
import { cacheCommand } from './cache.js';
import { classifyCommand } from './classify.js';
import { convertCommand } from './convert.js';
import { embedCommand } from './embed.js';
import { EXIT_ERROR, oneLine, warn } from './errors.js';
import { indexCommand } from './index-command.js';
import { searchCommand } from './search.js';
import { serveCommand } from './serve.js';
import { interrupt } from './shared.js';
import { similarityCommand } from './similarity.js';
import { workerCommand } from './worker.js';

function packageVersion(): string {
  // src/cli/main.ts and dist/src/cli/main.js both sit under the package root.
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(fs.readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'altclip' && pkg.version) return pkg.version;
    } catch {
      // not there: try the next level
    }
  }
  return 'unknown';
}

export function program(): Command {
  const prog = new Command('altclip')
    .description('AltCLIP (multilingual CLIP) on ONNX Runtime: zero-shot classification, similarity, embeddings')
    .version(packageVersion(), '-V, --version')
    .showSuggestionAfterError(true)
    .addCommand(classifyCommand())
    .addCommand(similarityCommand())
    .addCommand(embedCommand())
    .addCommand(cacheCommand())
    .addCommand(indexCommand())
    .addCommand(searchCommand())
    .addCommand(serveCommand())
    .addCommand(workerCommand())
    .addCommand(convertCommand());
  prog.addHelpText('after', '\nRun "altclip <command> --help" for the options of a command.');
  for (const cmd of [prog, ...prog.commands]) {
    // Commander's own messages ("error: unknown option '--x'") get the program name in front.
    cmd.configureOutput({ outputError: (str, write) => write(`altclip: ${str}`) });
    cmd.exitOverride();
  }
  return prog;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode; // message already printed (or --help/--version)
    if (process.env.ALTCLIP_DEBUG) console.error(err);
    process.stderr.write(`altclip: error: ${oneLine(err)}\n`);
    return EXIT_ERROR;
  }
}

// Library warnings (process.emitWarning, e.g. unused checkpoint weights) as one line each.
process.removeAllListeners('warning');
process.on('warning', (w) => warn(oneLine(w)));
// Ctrl-C: a command that can stop cleanly (embed) does; otherwise the cursor is restored and we exit.
process.on('SIGINT', interrupt);
// A closed pipe (`altclip ... | head`) ends the output quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => process.exit(err.code === 'EPIPE' ? 0 : 1));
const code = await main(process.argv.slice(2));
// Exit explicitly: native session threads must not keep a finished command alive.
process.stdout.write('', () => process.exit(code));
