import { isIP } from 'node:net';
import express, { type Express, type Request, type Response } from 'express';
import { z } from 'zod';
import type { Challenge, Origin } from '../../core/challenge.js';
import { CountersignError } from '../../core/errors.js';
import { userName } from '../../http/validate.js';
import type { AppContext } from '../../context.js';
import { AddressBlocks, plainAddress } from '../../core/addresses.js';
import type { FirstFactorSource } from '../../core/first-factor.js';
import { firstFactorError } from '../../core/directories.js';
import type { BridgeCredential, BridgeCredentials } from './credentials.js';

/** Marks logins opened through this API (origin.via), with the credential when there was one. */
const VIA = 'privacyidea';
const SAME_ANSWER = new Set(['first_factor_failed', 'user_not_found', 'no_second_factor', 'passkey_needs_browser', 'otp_not_enabled', 'otp_not_offered']);

/**
 * The subset of privacyIDEA's HTTP API that its Credential Provider for
 * Windows (and its Keycloak, ADFS and FreeRADIUS plugins) speak, so they work
 * against Countersign unchanged: /validate/check, /validate/polltransaction,
 * /validate/triggerchallenge and /auth. Transaction ids are challenge ids,
 * bound to their user; a push login ends with a single-use finalising check.
 *
 * Who may call what (privacyIDEA's own rules, `otppin=userstore`):
 * - /validate/check without a transaction: anyone, but it does something only with the
 *   first factor (`pass` is the password, or the password followed by the code) or with a
 *   bridge credential in the Authorization header (then `pass` may be empty, a code, or the
 *   password). Anything else opens nothing, checks nothing and counts against nobody.
 * - /validate/check and /validate/polltransaction with a transaction (`transaction_id`, or
 *   `state` as the FreeRADIUS plugin sends it): whoever holds the id of a login opened here.
 * - /validate/triggerchallenge: a bridge credential only. /auth: turns a credential into
 *   the token privacyIDEA clients send back.
 */

type Authentication = 'ACCEPT' | 'REJECT' | 'CHALLENGE' | 'DECLINED';

const envelope = (result: Record<string, unknown>, detail: Record<string, unknown> = {}) => ({
  id: 1,
  jsonrpc: '2.0',
  result,
  detail,
  time: Date.now() / 1000,
  version: 'privacyIDEA 3.9 (Countersign compatibility)',
});

const answer = (res: Response, auth: Authentication, detail: Record<string, unknown> = {}) =>
  res.json(envelope({ status: true, value: auth === 'ACCEPT', authentication: auth }, detail));

/** privacyIDEA's error shape: result.status false with a code and message. */
const fail = (res: Response, http: number, code: number, message: string) =>
  res.status(http).json(envelope({ status: false, error: { code, message: `ERR${code}: ${message}` } }));

const serial = (type: 'otp' | 'push', user: string) => `${type === 'otp' ? 'CSOTP' : 'CSPUSH'}-${user}`;

export function mountPrivacyIdeaApi(app: Express, ctx: AppContext, credentials: BridgeCredentials): void {
  // Mounted on its own paths only: the body parsers must not touch other fronts' requests.
  const router = express.Router();
  const bodies = [express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 20 }), express.json({ limit: '16kb' })];
  router.use(bodies);

  const params = (req: Request) => ({ ...(req.query as Record<string, unknown>), ...(req.body as Record<string, unknown>) });
  const input = z.object({
    user: userName,
    realm: z.string().max(64).optional(),
    pass: z.string().max(1024).default(''),
    transaction_id: z.string().max(64).optional(),
    /** The FreeRADIUS plugin sends the Access-Challenge's State back under this name. */
    state: z.string().max(64).optional(),
    /** The end user's address, believed from trusted callers only (sourceOf). */
    client: z.string().max(64).optional(),
  });
  const trusted = new AddressBlocks(ctx.config.bridge.trustedCallers);
  /** A login opened here, whatever credential (if any) opened it. */
  const opened = (c: Challenge | null): c is Challenge => Boolean(c && c.origin.front === 'bridge' && c.origin.via?.startsWith(VIA));
  /** privacyIDEA clients send the /auth token bare in Authorization; ours may add Bearer. */
  const credentialOf = async (req: Request): Promise<BridgeCredential | null> => {
    const header = req.get('authorization');
    if (!header) return null;
    return credentials.authenticate(header.replace(/^(?!Bearer )/i, 'Bearer '));
  };

  const challengeDetail = (c: Challenge) => {
    const multi = [];
    if (c.factors.includes('otp')) {
      multi.push({ transaction_id: c.id, serial: serial('otp', c.user), type: 'totp', client_mode: 'interactive', message: 'please enter otp: ', attributes: null, image: null });
    }
    if (c.factors.includes('push')) {
      const message = `Please confirm the authentication on your mobile device! (ID ${c.displayCode}${c.number ? `, number ${c.number}` : ''})`;
      multi.push({ transaction_id: c.id, serial: serial('push', c.user), type: 'push', client_mode: 'poll', message, attributes: { hideResponseInput: true }, image: null });
    }
    return {
      transaction_id: c.id,
      transaction_ids: multi.map(() => c.id),
      multi_challenge: multi,
      message: multi.map((m) => m.message).join(', '),
      messages: multi.map((m) => m.message),
      preferred_client_mode: c.factors.includes('push') ? 'poll' : 'interactive',
      client_mode: c.factors.includes('push') ? 'poll' : 'interactive',
      serial: multi[0]?.serial,
      type: multi[0]?.type,
      display_code: c.displayCode,
    };
  };

  /**
   * A cap on requests per caller that the first factor does not already bound: polls, answers to
   * a transaction, triggerchallenge, /auth. A first-factor attempt is left to the first-factor
   * step, whose limits never hold a user at their usual place (an address-wide cap here would:
   * an attacker behind the same NAT could spend it). Callers in bridge.trustedCallers speak for
   * all their users and are not capped.
   */
  const limited = async (req: Request) => !trusted.has(req.ip) && (await ctx.store.guards.hit(`pi:${req.ip}`, 60_000)) > 300;

  const originOf = (req: Request, cred: BridgeCredential | null, source?: FirstFactorSource): Origin => ({
    front: 'bridge',
    // Shown on the phone: it comes from the credential, never from what the request says.
    client: cred ? credentials.label(cred) : 'privacyIDEA client',
    // The user's own address when a trusted caller passed it, else the caller's.
    ip: source && !source.shared ? source.address : req.ip,
    userAgent: req.get('user-agent')?.slice(0, 200),
    via: cred ? `${VIA}:${cred.name}` : VIA,
  });

  const trigger = async (req: Request, res: Response, user: string, cred: BridgeCredential | null, origin = originOf(req, cred)) => {
    const c = await ctx.login.begin(user, null, origin, { policy: cred?.policy });
    // The policy lets this user in on the first factor alone.
    if (c.state === 'approved') return accepted(res, c.user);
    return answer(res, 'CHALLENGE', challengeDetail(c));
  };
  const accepted = (res: Response, user: string) => answer(res, 'ACCEPT', { message: 'matching 1 tokens', serial: serial('otp', user), type: 'totp' });
  const wrongPin = (res: Response) => answer(res, 'REJECT', { message: 'wrong otp pin' });

  /**
   * Where the end user is, for the first-factor throttle. A trusted caller (a bridge credential,
   * or an address in bridge.trustedCallers: privacyIDEA's FreeRADIUS plugin, a Keycloak or ADFS
   * server) passes the user's address as `client`, as privacyIDEA takes it from such callers;
   * without one it speaks for all its users (a larger budget, and a victim's usual place is
   * still never held). Anyone else is their own address: `client` from them is ignored.
   */
  const sourceOf = (req: Request, cred: BridgeCredential | null, client?: string): FirstFactorSource => {
    const caller = plainAddress(req.ip ?? '');
    if (!cred && !trusted.has(caller)) return { front: 'privacyidea', address: caller };
    if (client && isIP(client)) return { front: 'privacyidea', address: plainAddress(client) };
    return { front: 'privacyidea', address: caller, shared: true };
  };

  /**
   * Step one with the first factor: `pass` is the password followed by the code (tried
   * first, when it ends in digits), or the password alone (a challenge is opened). One
   * answer for an unknown user, a wrong password and a user without a second factor; both
   * readings are one attempt for the throttle.
   */
  const firstFactor = async (req: Request, res: Response, user: string, pass: string, cred: BridgeCredential | null, client?: string) => {
    const source = sourceOf(req, cred, client);
    const digits = (await ctx.store.users.get(user))?.otpDigits ?? 6;
    const split = new RegExp(`^(.+?)(\\d{${digits}})$`, 's').exec(pass);
    // The password followed by the code first, then the whole as the password.
    const candidates: { password: string; code?: string }[] = split ? [{ password: split[1]!, code: split[2]! }, { password: pass }] : [{ password: pass }];
    const verified = await ctx.firstFactor.check({ login: user, passwords: candidates.map((c) => c.password), source });
    if (!verified.ok) {
      if (verified.reason === 'unavailable') throw firstFactorError(verified);
      if (verified.reason === 'invalid' || verified.reason === 'account_locked') return wrongPin(res);
      // The password was right, and the account cannot sign in as it is: say why.
      return answer(res, 'REJECT', { message: verified.message });
    }
    const origin = originOf(req, cred, source);
    const { code } = candidates[verified.reading]!;
    if (code === undefined) {
      try {
        return await trigger(req, res, verified.name, cred, origin);
      } catch (err) {
        if (err instanceof CountersignError && err.code === 'no_second_factor') return wrongPin(res);
        throw err;
      }
    }
    try {
      // The credential's group policy holds on this path too, as on every other.
      await ctx.login.otpOnce(verified.name, code, origin, cred?.policy);
    } catch (err) {
      if (err instanceof CountersignError && err.status < 500 && err.code !== 'otp_locked' && err.code !== 'not_allowed') return wrongPin(res);
      throw err;
    }
    return accepted(res, verified.name);
  };

  /** Answers every failure in privacyIDEA's words; nothing here approves. */
  const guarded = (handler: (req: Request, res: Response) => Promise<unknown>, capped = true) => async (req: Request, res: Response) => {
    try {
      if (capped && (await limited(req))) return fail(res, 429, 429, 'too many requests');
      await handler(req, res);
    } catch (err) {
      if (err instanceof CountersignError && err.status === 400) return fail(res, 400, 905, err.message);
      if (err instanceof CountersignError && err.status === 429) return fail(res, 429, 429, err.message);
      if (err instanceof CountersignError && err.status < 500) {
        // Who exists and who has which factor is nobody's business here.
        return answer(res, 'REJECT', { message: SAME_ANSWER.has(err.code) ? 'wrong otp pin' : err.message });
      }
      ctx.log.error({ err }, 'privacyidea compatibility: request failed');
      return fail(res, err instanceof CountersignError ? err.status : 500, 903, 'the service is unavailable; nothing was approved');
    }
  };

  router.post(
    '/check',
    guarded(async (req, res) => {
      const p = input.safeParse(params(req));
      if (!p.success) return fail(res, 400, 905, `Missing or invalid parameter: ${p.error.issues.map((i) => i.path.join('.')).join(', ')}`);
      const { user, pass, client } = p.data;
      const tid = p.data.transaction_id || p.data.state;
      if (!tid) {
        let cred: BridgeCredential | null;
        try {
          cred = await credentialOf(req);
        } catch {
          return fail(res, 401, 4033, 'Authentication failure. Missing or invalid Authorization header.');
        }
        const origin = originOf(req, cred, sourceOf(req, cred, client));
        if (cred && pass === '') return trigger(req, res, user, cred, origin);
        if (cred && /^\d{6,8}$/.test(pass)) {
          // The credential provider checked the Windows password: the code is the second factor,
          // and the credential's group policy holds as on every other path.
          await ctx.login.otpOnce(user, pass, origin, cred.policy);
          return accepted(res, user);
        }
        // Without a credential an empty pass proves nothing: nothing is opened or counted.
        if (pass === '') return wrongPin(res);
        return firstFactor(req, res, user, pass, cred, client);
      }
      if (await limited(req)) return fail(res, 429, 429, 'too many requests');
      const c = /^[A-Za-z0-9_-]{16,64}$/.test(tid) ? await ctx.engine.get(tid) : null;
      if (!opened(c) || c.user !== user) return answer(res, 'REJECT', { message: 'no matching challenge for this user' });
      if (pass !== '') {
        await ctx.login.answerOtp(c.id, pass);
        return answer(res, 'ACCEPT', { message: 'Found matching challenge', serial: serial('otp', user), type: 'totp' });
      }
      // The finalising check after an approved push: once per transaction.
      if (c.state === 'rejected') return answer(res, 'DECLINED', { message: 'the authentication was declined on the phone', transaction_id: tid });
      if (c.state !== 'approved') return answer(res, 'REJECT', { message: c.state === 'pending' ? 'the challenge has not been answered yet' : `the challenge is ${c.state}` });
      if (!(await ctx.store.guards.claimOnce(`pi-final:${tid}`, 3600_000))) {
        return answer(res, 'REJECT', { message: 'this transaction was already used' });
      }
      return answer(res, 'ACCEPT', { message: 'Found matching challenge', serial: serial(c.method === 'otp' ? 'otp' : 'push', user), type: c.method === 'otp' ? 'totp' : 'push' });
    }, false),
  );

  router.get(
    '/polltransaction',
    guarded(async (req, res) => {
      const tid = typeof req.query.transaction_id === 'string' ? req.query.transaction_id : '';
      if (!tid) return fail(res, 400, 905, "Missing parameter: 'transaction_id'");
      const c = /^[A-Za-z0-9_-]{16,64}$/.test(tid) ? await ctx.engine.get(tid) : null;
      const status = !opened(c) ? 'none' : c.state === 'approved' ? 'accept' : c.state === 'rejected' ? 'declined' : c.state === 'pending' ? 'pending' : c.state;
      res.json(envelope({ status: true, value: status === 'accept' }, { challenge_status: status }));
    }),
  );

  router.post(
    '/triggerchallenge',
    guarded(async (req, res) => {
      let cred: BridgeCredential | null;
      try {
        cred = await credentialOf(req);
      } catch {
        cred = null;
      }
      if (!cred) return fail(res, 401, 4033, 'Authentication failure. Missing or invalid Authorization header.');
      const p = input.safeParse(params(req));
      if (!p.success) return fail(res, 400, 905, "Missing parameter: 'user'");
      return trigger(req, res, p.data.user, cred);
    }),
  );

  /** privacyIDEA's service-account login: the bridge credential's token is the "password". */
  app.post(
    '/auth',
    ...bodies,
    guarded(async (req, res) => {
      const token = String(params(req).password ?? '');
      try {
        await credentials.authenticate(`Bearer ${token}`);
      } catch {
        return fail(res, 401, 4031, 'Authentication failure. Wrong credentials');
      }
      res.json(envelope({ status: true, value: { token, role: 'admin', username: String(params(req).username ?? '') } }));
    }),
  );

  app.use('/validate', router);
}
