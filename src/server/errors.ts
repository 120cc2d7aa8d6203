// Error responses: `{ "error": { "message", "type" } }` (OpenAI's shape, as Infinity and TEI answer).

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'server_busy'
  | 'server_error'
  | 'service_unavailable';

const TYPES: Record<number, ErrorType> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  404: 'not_found_error',
  405: 'invalid_request_error',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'server_busy',
  503: 'service_unavailable',
};

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

export function errorBody(status: number, message: string): { error: { message: string; type: ErrorType } } {
  return { error: { message, type: errorType(status) } };
}
