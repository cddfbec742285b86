-- A top-up or correction written to the store: added to the shared balance if Redis holds one
-- (if not, the next admission seeds it from the store, which already includes it).
-- KEYS: 1 tenant state; ARGV: 1 amount (nanos)
local bal = redis.call('HGET', KEYS[1], 'bal')
if bal == false then return 0 end
redis.call('HSET', KEYS[1], 'bal', tonumber(bal) + tonumber(ARGV[1]))
return 1
