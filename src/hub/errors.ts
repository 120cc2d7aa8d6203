// The hub's failure modes, named after huggingface_hub's exceptions (utils/_errors.py) so a reader
// can map one onto the other. Every message names the repo, the revision and the file.

export type HubErrorCode =
  | 'RepoNotFound' // 404 / 401 with X-Error-Code RepoNotFound (also: private repo without a token)
  | 'GatedRepo' // 401 / 403 with X-Error-Code GatedRepo
  | 'Forbidden' // 403 without a more specific code
  | 'RevisionNotFound' // X-Error-Code RevisionNotFound
  | 'EntryNotFound' // X-Error-Code EntryNotFound (or a cached `.no_exist` marker)
  | 'LocalEntryNotFound' // offline / hub unreachable, and the file is not in the cache
  | 'HttpError' // any other HTTP status (5xx, ...)
  | 'BadResponse' // the server's answer lacks what the hub protocol promises (commit, etag, size)
  | 'DownloadFailed' // connection lost, size or sha256 mismatch
  | 'InvalidArgument'; // a repo id, revision or filename that cannot be used safely

export interface HubFileRef {
  repoId: string;
  revision: string;
  filename: string;
}

export class HubError extends Error {
  readonly code: HubErrorCode;
  readonly repoId: string;
  readonly revision: string;
  readonly filename: string;
  /** HTTP status of the response that caused the error, when there was one. */
  readonly status?: number;
  /** X-Repo-Commit of that response (a 404 for a missing file carries the commit it looked at). */
  readonly commit?: string;

  constructor(
    code: HubErrorCode,
    ref: HubFileRef,
    detail: string,
    extra: { status?: number; commit?: string; cause?: unknown } = {},
  ) {
    super(`${ref.repoId} (revision ${ref.revision}), file ${ref.filename}: ${detail}`, { cause: extra.cause });
    this.name = 'HubError';
    this.code = code;
    this.repoId = ref.repoId;
    this.revision = ref.revision;
    this.filename = ref.filename;
    this.status = extra.status;
    this.commit = extra.commit;
  }
}

const TOKEN_HINT = 'pass a token (options.token, the HF_TOKEN variable, or `huggingface-cli login`)';

/**
 * huggingface_hub's hf_raise_for_status: the X-Error-Code header decides the error class; a bare
 * 401 is treated as "repository not found" (the hub answers 401 for private repos to anonymous users).
 */
export function errorForResponse(
  status: number,
  headers: Headers,
  ref: HubFileRef,
  context: { endpoint: string; sentToken: boolean; url: string },
): HubError {
  const code = headers.get('x-error-code');
  const message = headers.get('x-error-message');
  const server = message ? ` (server: ${message})` : '';
  if (code === 'RevisionNotFound') {
    return new HubError('RevisionNotFound', ref,
      `revision "${ref.revision}" is not a branch, tag or commit of this repo; see ${context.endpoint}/${ref.repoId}${server}`, { status });
  }
  if (code === 'EntryNotFound') {
    return new HubError('EntryNotFound', ref,
      `the repo has no such file at this revision; see ${context.endpoint}/${ref.repoId}/tree/${ref.revision}${server}`,
      { status, commit: headers.get('x-repo-commit') ?? undefined });
  }
  if (code === 'GatedRepo') {
    const what = context.sentToken ? 'the token sent has no access to it' : 'no token was sent';
    return new HubError('GatedRepo', ref,
      `this repo is gated and ${what}: request access at ${context.endpoint}/${ref.repoId} and ${TOKEN_HINT}${server}`, { status });
  }
  if (code === 'RepoNotFound' || (status === 401 && message !== 'Invalid credentials in Authorization header')) {
    const hint = context.sentToken ? 'check the repo id and that your token can read it' : `if it is private, ${TOKEN_HINT}`;
    return new HubError('RepoNotFound', ref, `repository not found (HTTP ${status}); ${hint}${server}`, { status });
  }
  if (status === 401) {
    return new HubError('Forbidden', ref, `the token was refused (HTTP 401); ${TOKEN_HINT}${server}`, { status });
  }
  if (status === 403) {
    const hint = context.sentToken ? 'make sure your token has read permission for this repo' : TOKEN_HINT;
    return new HubError('Forbidden', ref, `access refused (HTTP 403): ${hint}${server}`, { status });
  }
  if (status === 404) {
    // A plain 404 (no X-Error-Code, e.g. from a mirror): the file, revision or repo is missing.
    return new HubError('EntryNotFound', ref, `not found (HTTP 404) at ${context.url}${server}`, { status });
  }
  return new HubError('HttpError', ref, `HTTP ${status} from ${context.url}${server}`, { status });
}
