// Error responses: `{ "error": { "message", "type" } }` (OpenAI's shape, as Infinity and TEI answer).
// Every error the server sends has this shape, fastify's and node's own included (app.ts), and echoes
// at most ECHO_CHARS characters of what the client sent (`echo`).

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'request_timeout'
  | 'payload_too_large'
  | 'uri_too_long'
  | 'unsupported_media_type'
  | 'misdirected_request'
  | 'server_busy'
  | 'request_header_fields_too_large'
  | 'server_error'
  | 'service_unavailable';

const TYPES: Record<number, ErrorType> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  404: 'not_found_error',
  405: 'invalid_request_error',
  408: 'request_timeout',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  421: 'misdirected_request',
  429: 'server_busy',
  431: 'request_header_fields_too_large',
  503: 'service_unavailable',
};

/** Most characters of client input an error message repeats. */
export const ECHO_CHARS = 100;

export function errorType(status: number): ErrorType {
  return TYPES[status] ?? (status >= 500 ? 'server_error' : 'invalid_request_error');
}

/** An error with the HTTP status it answers with. */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Client input as an error message quotes it (JSON: a string in quotes), cut to `max` characters. */
export function echo(value: unknown, max = ECHO_CHARS): string {
  if (value === undefined) return 'nothing';
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = Array.isArray(value) ? '[...]' : String(value);
  }
  return s.length > max ? `${s.slice(0, max)}...` : s;
}

/** A message that may quote client input (a parser's, a library's), cut to `max` characters. */
export function clip(text: string, max = 2 * ECHO_CHARS): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}

export function errorBody(status: number, message: string): { error: { message: string; type: ErrorType } } {
  return { error: { message, type: errorType(status) } };
}
