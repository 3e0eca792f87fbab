import { z } from 'zod';
import { badRequest } from '../core/errors.js';

/** Parses input at the edge; a mismatch is a 400 that names the field. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, what = 'request'): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw badRequest('invalid_input', `invalid ${what}: ${z.prettifyError(r.error).replace(/\n/g, '; ')}`);
  return r.data;
}

export const userName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/, 'a user name is 1-128 letters, digits or . _ @ + - and starts with a letter or digit');
