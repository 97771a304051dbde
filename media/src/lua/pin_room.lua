local current = redis.call('GET', KEYS[1])
if current then
  local until_ms = redis.call('ZSCORE', KEYS[2], current)
  if until_ms and tonumber(until_ms) > tonumber(ARGV[1]) then return current end
end
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
if #live == 0 then return false end
local pick = live[(tonumber(ARGV[3]) % #live) + 1]
redis.call('SET', KEYS[1], pick, 'PX', ARGV[2])
return pick
