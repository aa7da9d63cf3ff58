/**
 * Where compiled kernels run. One vocabulary for the compiler, the tuner's records and the
 * runtime: a Backend is what runs, a BackendChoice what a caller asks for.
 */
import { TidarcError } from '../errors.js';

/** 'cpu': the portable C++ library; 'cuda': fatbins on a GPU, or .emu.so modules on the emulated driver. */
export type Backend = 'cpu' | 'cuda';

/** A backend, or 'auto': cuda when it is usable here, else cpu (and the reason). */
export type BackendChoice = 'auto' | Backend;

export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'cpu', 'cuda'];

/** `value` as a BackendChoice, or one error naming `field` and the allowed values. */
export function checkBackendChoice(value: unknown, field = 'backend'): BackendChoice {
  if ((BACKEND_CHOICES as readonly unknown[]).includes(value)) return value as BackendChoice;
  throw new TidarcError('invalid-argument', 'unknown backend', { field, value, allowed: BACKEND_CHOICES.join(', ') });
}
