// What the command reports: one line per problem on stderr, never a stack trace.

/** A failure to report as `altclip: error: <message>` with exit code 1. */
export class CliError extends Error {}

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
/** The command finished, but some inputs were skipped (each named in a warning). */
export const EXIT_SKIPPED = 2;
/** Stopped by Ctrl-C (128 + SIGINT, as a shell reports a process killed by it). */
export const EXIT_INTERRUPTED = 130;

/** The first line of an error's message (library errors name the file and the problem). */
export function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n').find((l) => l.trim() !== '')?.trim() ?? (err instanceof Error ? err.name : 'unknown error');
}

export function warn(message: string): void {
  // Library warnings may carry the package's name already ("altclip: rebuilding ..."): say it once.
  process.stderr.write(`altclip: warning: ${message.replace(/^altclip:\s*(warning:\s*)?/i, '')}\n`);
}
