/**
 * Lua scripts: each one decides something in a single atomic step on one key
 * (so it runs unchanged on Redis Cluster).
 */

/** KEYS[1] challenge; ARGV: to, now, method, reason, keepAfterMs, channel */
export const TRANSITION = `
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {0} end
if state ~= 'pending' then return {0, redis.call('HGETALL', KEYS[1])} end
local now = tonumber(ARGV[2])
local to = ARGV[1]
local method = ARGV[3]
if now >= tonumber(redis.call('HGET', KEYS[1], 'deadline')) then
  to = 'expired'
  method = 'deadline'
elseif to == 'expired' then
  return {0, redis.call('HGETALL', KEYS[1])}
end
redis.call('HSET', KEYS[1], 'state', to, 'resolvedAt', ARGV[2])
if method ~= '' then redis.call('HSET', KEYS[1], 'method', method) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'reason', ARGV[4]) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local id = redis.call('HGET', KEYS[1], 'id')
local msg = {id = id, state = to, resolvedAt = now}
if method ~= '' then msg.method = method end
if ARGV[4] ~= '' then msg.reason = ARGV[4] end
redis.call('PUBLISH', ARGV[6], cjson.encode(msg))
return {1, redis.call('HGETALL', KEYS[1])}
`;

/** KEYS[1] hash; ARGV: ttlMs, field, value, ... — creates only if absent. */
export const CREATE_HASH = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if tonumber(ARGV[1]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
`;

/** KEYS[1] hash; ARGV: nSet, field, value, ..., fieldToDelete, ... — only if it exists. */
export const UPDATE_HASH = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = tonumber(ARGV[1])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 2, 1 + 2 * n)) end
if #ARGV > 1 + 2 * n then redis.call('HDEL', KEYS[1], unpack(ARGV, 2 + 2 * n)) end
return 1
`;

/** KEYS[1] user; ARGV: value — accept an OTP step/counter once, in order. */
export const ADVANCE_OTP = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local last = tonumber(redis.call('HGET', KEYS[1], 'otpLast') or '-1')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('HSET', KEYS[1], 'otpLast', ARGV[1], 'otpFailures', 0)
redis.call('HDEL', KEYS[1], 'otpLocks')
return 1
`;

/**
 * One wrong code, counted (shared by OTP_FAILURE and SPEND_OTP): a lock that ran out starts a
 * fresh count; reaching maxFailures locks, each lock since the last good code doubling the next
 * one up to maxLockMs. Expects locals `now` and `lockedUntil`; leaves `n` (the failures) and
 * `lockedUntil`. ARGV[first], [first+1], [first+2]: maxFailures, lockMs, maxLockMs.
 */
const countOtpFailure = (first: number) => `
if lockedUntil > 0 and lockedUntil <= now then
  redis.call('HSET', KEYS[1], 'otpFailures', 0)
  redis.call('HDEL', KEYS[1], 'otpLockedUntil')
  lockedUntil = 0
end
local n = redis.call('HINCRBY', KEYS[1], 'otpFailures', 1)
if n >= tonumber(ARGV[${first}]) then
  local locks = redis.call('HINCRBY', KEYS[1], 'otpLocks', 1)
  lockedUntil = math.floor(now + math.min(tonumber(ARGV[${first + 1}]) * 2 ^ math.min(locks - 1, 30), tonumber(ARGV[${first + 2}])))
  redis.call('HSET', KEYS[1], 'otpLockedUntil', lockedUntil, 'otpFailures', 0)
end`;

/**
 * KEYS[1] user; ARGV: now, maxFailures, lockMs, maxLockMs. A lock that ran out starts a
 * fresh count; each lock since the last good code doubles the next one (up to maxLockMs).
 */
export const OTP_FAILURE = `
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local now = tonumber(ARGV[1])
local lockedUntil = tonumber(redis.call('HGET', KEYS[1], 'otpLockedUntil') or '0')
${countOtpFailure(2)}
return {n, lockedUntil}
`;

/** KEYS[1] user; ARGV: expected hash, new hash — a compare-and-set of the password hash. */
export const REPLACE_PASSWORD_HASH = `
if redis.call('HGET', KEYS[1], 'passwordHash') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'passwordHash', ARGV[2])
return 1
`;

/** KEYS[1] counter; ARGV: windowMs */
export const HIT = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
`;

/** KEYS[1] counter — its count and time left, read together so they belong to the same window. */
export const PEEK = `
local n = redis.call('GET', KEYS[1])
if not n then return {0, 0} end
return {tonumber(n), redis.call('PTTL', KEYS[1])}
`;

/** KEYS[1] user; ARGV: challengeId — returns the replaced pending challenge. */
export const SWAP_PENDING = `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local old = redis.call('HGET', KEYS[1], 'pendingChallenge')
redis.call('HSET', KEYS[1], 'pendingChallenge', ARGV[1])
return old
`;

/** KEYS[1] devices hash; ARGV: id, device JSON, max — adds it unless the user has max devices already; 1 when added. */
export const ADD_DEVICE = `
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`;

/** KEYS[1] devices hash; ARGV: id, patch JSON — merges into the stored JSON. */
export const UPDATE_DEVICE = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local d = cjson.decode(cur)
for k, v in pairs(cjson.decode(ARGV[2])) do d[k] = v end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(d))
return 1
`;

/**
 * KEYS[1] user; ARGV: match ('' for none), now, maxFailures, lockMs, maxLockMs. One typed OTP
 * in one step: refused while locked; a match above the last accepted step is accepted (as
 * ADVANCE_OTP); anything else is a failure counted as OTP_FAILURE counts it.
 * Returns {1} or {0, failures, lockedUntil, why} with why '', 'replay', 'locked' or 'missing'.
 */
export const SPEND_OTP = `
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0, 'missing'} end
local now = tonumber(ARGV[2])
local lockedUntil = tonumber(redis.call('HGET', KEYS[1], 'otpLockedUntil') or '0')
if lockedUntil > now then
  return {0, tonumber(redis.call('HGET', KEYS[1], 'otpFailures') or '0'), lockedUntil, 'locked'}
end
local why = ''
if ARGV[1] ~= '' then
  local last = tonumber(redis.call('HGET', KEYS[1], 'otpLast') or '-1')
  if tonumber(ARGV[1]) > last then
    redis.call('HSET', KEYS[1], 'otpLast', ARGV[1], 'otpFailures', 0)
    redis.call('HDEL', KEYS[1], 'otpLocks')
    return {1}
  end
  why = 'replay'
end
${countOtpFailure(3)}
return {0, n, lockedUntil, why}
`;
