local t = redis.call('HMGET', KEYS[1], 'user', 'family', 'used')
if not t[1] then return {'unknown'} end
local revoked = ARGV[1] .. t[2]
if redis.call('EXISTS', revoked) == 1 then return {'revoked'} end
if t[3] == '1' then
  redis.call('SET', revoked, '1', 'EX', ARGV[2])
  return {'reused'}
end
redis.call('HSET', KEYS[1], 'used', '1')
return {'ok', t[1], t[2]}
