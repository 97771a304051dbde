if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
for i = 2, #KEYS do redis.call('SADD', KEYS[i], ARGV[2]) end
return 1
