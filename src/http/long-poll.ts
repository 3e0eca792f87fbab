import type { Request } from 'express';
import type { Challenge } from '../core/challenge.js';
import type { ChallengeEngine } from '../core/engine.js';

/**
 * Long-poll for HTTP fronts: the challenge as soon as it is decided, or its
 * state after `seconds`, or when the client goes away — never an error for
 * a wait that simply ran out.
 */
export async function waitUpTo(engine: ChallengeEngine, c: Challenge, seconds: number, req: Request): Promise<Challenge> {
  if (c.state !== 'pending' || seconds === 0) return c;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new Error('wait over')), seconds * 1000);
  req.on('close', () => abort.abort(new Error('client went away')));
  try {
    return await engine.wait(c.id, abort.signal);
  } catch (err) {
    if (abort.signal.aborted) return (await engine.get(c.id)) ?? c;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The same wait for a login known by its id only (the console's and the portal's own sign-in):
 * its state once decided, or after `seconds`, or when the browser goes away; 'expired' once it
 * is gone from the store.
 */
export async function stateAfterWait(engine: ChallengeEngine, id: string, seconds: number, req: Request): Promise<Challenge['state']> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new Error('wait over')), seconds * 1000);
  req.on('close', () => abort.abort(new Error('client went away')));
  try {
    return (await engine.wait(id, abort.signal)).state;
  } catch (err) {
    if (!abort.signal.aborted) throw err;
    return (await engine.get(id))?.state ?? 'expired';
  } finally {
    clearTimeout(timer);
  }
}
