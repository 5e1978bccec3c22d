import { createHash } from 'node:crypto';

/**
 * The Lua scripts the Redis store runs: every write is one script, so
 * compare-and-set and the owner-index rules hold atomically on the server.
 */

/** Dead members an owner-index write removes in passing (a listing removes them all). */
const PRUNE_PER_WRITE = 16;

// ARGV of create and update: 1 now, 2 data, 3 version, 4 expiresAt,
// 5 createdAt, 6 native expiry (ms since epoch), 7 '1' when there is an
// owner, 8 owner, 9 expected version (update only).
const RECORD_HELPERS = `
local function live()
  local expiresAt = redis.call('HGET', KEYS[1], 'expiresAt')
  return expiresAt and tonumber(expiresAt) > tonumber(ARGV[1])
end
local function write()
  redis.call('HSET', KEYS[1], 'data', ARGV[2], 'version', ARGV[3], 'expiresAt', ARGV[4],
    'createdAt', ARGV[5])
  if ARGV[7] == '1' then
    redis.call('HSET', KEYS[1], 'owner', ARGV[8])
  else
    redis.call('HDEL', KEYS[1], 'owner')
  end
  redis.call('PEXPIREAT', KEYS[1], ARGV[6])
end
`;

const OWNER_HELPERS = `
local function forget(member)
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
end
local function prune(cutoff, limit)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff, 'LIMIT', 0, limit)
  for _, member in ipairs(dead) do forget(member) end
end
`;

export const scripts = {
  // 1 created; 0 a live record holds the key. An expired record still inside
  // the margin is overwritten.
  create: script(`${RECORD_HELPERS}
if live() then return 0 end
write()
return 1`),
  // {1, previous owner or nil} ok, {0} conflict, {-1} missing.
  update: script(`${RECORD_HELPERS}
if not live() then return {-1} end
if tonumber(redis.call('HGET', KEYS[1], 'version')) ~= tonumber(ARGV[9]) then return {0} end
local previous = redis.call('HGET', KEYS[1], 'owner')
write()
return {1, previous}`),
  // ARGV: 1 now, 2 expiresAt, 3 native expiry, 4 '1' when the caller expects
  // an owner, 5 that owner. Touches only a record whose owner is the one
  // expected (no owner for '0'): {1} touched, {0} not live, and {2, owner or
  // nil, version} when the owner is another, which the caller indexes first.
  touch: script(`${RECORD_HELPERS}
if not live() then return {0} end
local owner = redis.call('HGET', KEYS[1], 'owner')
if (owner == false and ARGV[4] == '0') or (owner ~= false and ARGV[4] == '1' and owner == ARGV[5]) then
  redis.call('HSET', KEYS[1], 'expiresAt', ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
  return {1}
end
return {2, owner, redis.call('HGET', KEYS[1], 'version')}`),
  // ARGV: 1 '1' to remove the record only if ARGV 2 owns it, 3 now.
  // {0} nothing removed, else {1 if it was live else 0, owner or nil, version}.
  destroy: script(`
local f = redis.call('HMGET', KEYS[1], 'owner', 'version', 'expiresAt')
if ARGV[1] == '1' and f[1] ~= ARGV[2] then return {0} end
if redis.call('UNLINK', KEYS[1]) == 0 then return {0} end
local live = 0
if f[3] and tonumber(f[3]) > tonumber(ARGV[3]) then live = 1 end
return {live, f[1], f[2]}`),
  // ARGV: 1 cutoff. Deletes the record if it expires at or before the cutoff:
  // {1, owner or nil, version}, else {0}.
  clear: script(`
local f = redis.call('HMGET', KEYS[1], 'expiresAt', 'owner', 'version')
if f[1] and tonumber(f[1]) <= tonumber(ARGV[1]) then
  redis.call('UNLINK', KEYS[1])
  return {1, f[2], f[3]}
end
return {0}`),
  // The owner index; KEYS: 1 the members by expiry, 2 their versions.
  // ARGV: 1 member, 2 version, 3 expiresAt, 4 ttl of both keys (ms), 5 cutoff.
  // Versions and expiries only ever go up here, and both keys are made to
  // outlive the member.
  own: script(`${OWNER_HELPERS}
local stored = redis.call('HGET', KEYS[2], ARGV[1])
if not stored or tonumber(stored) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
prune(ARGV[5], ${PRUNE_PER_WRITE})
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) < tonumber(ARGV[4]) then redis.call('PEXPIRE', key, ARGV[4]) end
end
return 1`),
  // ARGV: 1 member, 2 version. Removes the member unless a write of a later
  // version has indexed it since.
  disown: script(`${OWNER_HELPERS}
local stored = redis.call('HGET', KEYS[2], ARGV[1])
if stored and tonumber(stored) > tonumber(ARGV[2]) then return 0 end
forget(ARGV[1])
return 1`),
  // ARGV: 1 member, 2 now. Removes the member if its latest expiry is past.
  drop: script(`${OWNER_HELPERS}
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > tonumber(ARGV[2]) then return 0 end
forget(ARGV[1])
return 1`),
  // ARGV: 1 cutoff. The members, after removing those expired before the cutoff.
  list: script(`${OWNER_HELPERS}
prune(ARGV[1], -1)
return redis.call('ZRANGE', KEYS[1], 0, -1)`),
  // ARGV: 1 token, 2 ttl ms. Free, expired (gone natively) or already ours: take it.
  lock: script(`
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`),
  // ARGV: 1 token.
  unlock: script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`),
};

export interface Script {
  lua: string;
  sha: string;
}

function script(lua: string): Script {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}
