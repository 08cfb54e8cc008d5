-- presence.lua: change or read one user's presence, atomically.
-- A user's sessions live in a hash, field = "node:session", value = "status:expires_ms";
-- a session whose expiry passed (its node died) counts as gone. The user's status is
-- online if any live session is online, away if all live sessions are away, else offline.
-- All three keys carry the user's bucket hash tag {bN} (one slot on a cluster).
-- KEYS[1]  rc:pres:{bN}:<user>   the user's sessions (hash)
-- KEYS[2]  rc:seen:{bN}:<user>   last_seen ms (kept after going offline)
-- KEYS[3]  rc:pres:{bN}:expiring zset of the bucket's users by latest session expiry (sweepers)
-- ARGV[1]  op: connect | disconnect | status | refresh | get | sweep
-- ARGV[2]  now, ms
-- ARGV[3]  session field ("node:session"; empty for get/sweep)
-- ARGV[4]  status for connect/status/refresh: online | away
-- ARGV[5]  session ttl, ms
-- ARGV[6]  the user id (member of KEYS[3])
-- returns  {old_status, new_status, last_seen_ms or -1}
local now = tonumber(ARGV[2])
-- The status from the stored sessions. mode 'stale': lapsed sessions still count
-- (the status everyone was last told); 'live': they do not; 'purge': they do not
-- and are removed. Only writers purge, so the sweeper sees every lapse once.
local function status(mode)
  local any, online = false, false
  local fields = redis.call('HGETALL', KEYS[1])
  for i = 1, #fields, 2 do
    local value = fields[i + 1]
    local sep = string.find(value, ':', 1, true)
    local st = string.sub(value, 1, sep - 1)
    local exp = tonumber(string.sub(value, sep + 1))
    if mode ~= 'stale' and exp <= now then
      if mode == 'purge' then redis.call('HDEL', KEYS[1], fields[i]) end
    else
      any = true
      if st == 'online' then online = true end
    end
  end
  if online then return 'online' elseif any then return 'away' else return 'offline' end
end
local op = ARGV[1]
if op == 'get' then
  local st = status('live')
  return {st, st, tonumber(redis.call('GET', KEYS[2]) or '-1')}
end
local old = status('stale')
status('purge')
local ttl = tonumber(ARGV[5])
if op == 'connect' or op == 'refresh' or op == 'status' then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4] .. ':' .. (now + ttl))
  redis.call('ZADD', KEYS[3], 'GT', now + ttl, ARGV[6])
  redis.call('ZADD', KEYS[3], 'NX', now + ttl, ARGV[6])
  redis.call('SET', KEYS[2], now)
elseif op == 'disconnect' then
  redis.call('HDEL', KEYS[1], ARGV[3])
  redis.call('SET', KEYS[2], now)
end
local new = status('purge')
if new == 'offline' then
  redis.call('ZREM', KEYS[3], ARGV[6])
end
if old ~= 'offline' and new == 'offline' and op == 'sweep' then
  -- The sessions expired: last seen is when the last one was refreshed.
  redis.call('SET', KEYS[2], now)
end
return {old, new, tonumber(redis.call('GET', KEYS[2]) or '-1')}
