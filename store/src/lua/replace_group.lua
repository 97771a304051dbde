local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local version = cjson.decode(current).version or 0
if tostring(version) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
local added = tonumber(ARGV[4])
for i = 2, 1 + added do redis.call('SADD', KEYS[i], ARGV[3]) end
for i = 2 + added, #KEYS do redis.call('SREM', KEYS[i], ARGV[3]) end
return 1
