-- gcra.lua: one rate-limit decision (GCRA), atomic across nodes.
-- KEYS[1]  the limit cell, e.g. rc:rl:{user}:send (holds the theoretical arrival time, ms)
-- ARGV[1]  now, ms since the epoch (the caller's clock; nodes should be NTP-synced)
-- ARGV[2]  emission interval, ms (1000 / per_second; may be fractional)
-- ARGV[3]  burst (requests allowed at once)
-- returns  {allowed (1|0), retry_after_ms}
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local capacity = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > capacity then
  return {0, math.ceil(ahead - capacity)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(ahead) + 1)
return {1, 0}
