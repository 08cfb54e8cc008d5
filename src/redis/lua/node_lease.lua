-- node_lease.lua: node membership leases (src/cluster/registry.rs).
-- KEYS[1]  the live set, a sorted set: node id -> lease expiry (ms, Redis clock),
--          e.g. rc:{nodes}:live
-- KEYS[2]  node information, a hash: node id -> "<incarnation> <info json>",
--          e.g. rc:{nodes}:info (same hash tag: one slot on a cluster)
-- ARGV[1]  'renew' or 'leave'
-- ARGV[2]  node id
-- ARGV[3]  incarnation of the calling process (ms since the Unix epoch at start)
-- ARGV[4]  info json (renew)
-- ARGV[5]  lease length in ms (renew)
-- returns  renew: {'ok', id1, remaining_ms1, info1, id2, ...} for every live
--          node (the caller included), or {'superseded', incarnation} when a
--          newer incarnation of the same id holds the registration;
--          leave: {'left'}
-- Expired leases are dropped by every call, using Redis's clock only, so the
-- nodes' own clocks never matter.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[2]
local inc = tonumber(ARGV[3])

local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, d in ipairs(dead) do
  redis.call('HDEL', KEYS[2], d)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)

local cur = redis.call('HGET', KEYS[2], id)
local cur_inc = nil
if cur then
  cur_inc = tonumber(string.match(cur, '^(%d+) '))
end

if ARGV[1] == 'leave' then
  -- Only our own incarnation's registration is removed.
  if cur_inc == inc then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
  end
  return {'left'}
end

if cur_inc and cur_inc > inc then
  return {'superseded', string.format('%d', cur_inc)}
end

local lease = tonumber(ARGV[5])
redis.call('ZADD', KEYS[1], string.format('%d', now + lease), id)
redis.call('HSET', KEYS[2], id, string.format('%d', inc) .. ' ' .. ARGV[4])

local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now), '+inf', 'WITHSCORES')
local out = {'ok'}
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = string.format('%d', tonumber(live[i + 1]) - now)
  out[#out + 1] = redis.call('HGET', KEYS[2], live[i]) or ''
end
return out
