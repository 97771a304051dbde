local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if redis.call('EXISTS', KEYS[1]) == 1 then return {1, used} end
local size = tonumber(ARGV[2])
if used + size > tonumber(ARGV[3]) then return {2, used} end
redis.call('SET', KEYS[3], ARGV[4], 'NX')
redis.call('SET', KEYS[1], ARGV[1])
redis.call('INCRBY', KEYS[2], size)
return {0, used + size}
