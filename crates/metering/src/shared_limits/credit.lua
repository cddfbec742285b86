-- A top-up or correction written to the store: added to the shared balance if Redis holds one
-- (if not, the next admission seeds it from the store, which already includes it).
-- Once per top-up: a retry after a timeout (the first may have run) does nothing.
-- KEYS: 1 tenant state, 2 this top-up's mark; ARGV: 1 amount (nanos), 2 mark's life (ms)
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', tonumber(ARGV[2])) then return 0 end
local bal = redis.call('HGET', KEYS[1], 'bal')
if bal == false then return 0 end
redis.call('HSET', KEYS[1], 'bal', tonumber(bal) + tonumber(ARGV[1]))
return 1
