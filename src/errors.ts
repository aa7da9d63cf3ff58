/**
 * Errors are data: a code, where it happened, what was found and what is allowed.
 * The CLI renders them as one sentence; library users can branch on `code`.
 */
export type ErrorCode =
  | 'invalid-spec'
  | 'invalid-argument'
  | 'invalid-json'
  | 'missing-file'
  | 'unsupported'
  | 'build-failed'
  | 'runtime';

export interface ErrorDetails {
  /** Dotted path of the offending field, e.g. `model.headDim` or `--draft`. */
  field?: string;
  /** The value that was found (rendered with JSON.stringify when not a string). */
  value?: unknown;
  /** What would have been accepted, e.g. `one of 64, 128`. */
  allowed?: string;
  /** Where the input came from (a file path), when known. */
  source?: string;
}

export class TidarcError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(renderMessage(message, details));
    this.name = 'TidarcError';
    this.code = code;
    this.details = details;
  }
}

function renderMessage(message: string, d: ErrorDetails): string {
  const parts = [message];
  if (d.field !== undefined && d.value !== undefined) {
    parts.push(`(${d.field} = ${typeof d.value === 'string' ? d.value : JSON.stringify(d.value)})`);
  } else if (d.field !== undefined) {
    parts.push(`(${d.field})`);
  }
  let text = parts.join(' ');
  if (d.allowed !== undefined) text += `; allowed: ${d.allowed}`;
  if (d.source !== undefined) text = `${d.source}: ${text}`;
  return text;
}

/** Throws an invalid-spec error naming the field, the value and what is allowed. */
export function invalid(field: string, value: unknown, allowed: string, source?: string): never {
  throw new TidarcError('invalid-spec', 'invalid value', { field, value, allowed, source });
}

export function requireInteger(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    invalid(field, value, `an integer from ${min} to ${max}`);
  }
  return value;
}
