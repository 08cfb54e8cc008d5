-- seq.lua: allocate the next stream seq of a room, shared by every node.
-- KEYS[1]  the room's seq counter, e.g. rc:seq:{room}
-- ARGV[1]  floor: the highest seq the calling node knows was used (guards
--          against a counter lost with a Redis restart)
-- returns  the allocated seq (strictly above every seq allocated before)
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if cur < floor then cur = floor end
cur = cur + 1
redis.call('SET', KEYS[1], cur)
return cur
