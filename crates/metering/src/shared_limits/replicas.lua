-- A replica's sign of life; returns how many replicas are alive, this one included. The local
-- fallback divides every limit by this count.
-- KEYS: 1 the replicas set; ARGV: 1 this replica, 2 lease ms
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
