-- Renews a running request's lease on its tenant's and key's slots. A lease that already
-- expired is not brought back: what it held was released, and settling must not release it
-- twice. Returns how many of the leases were renewed.
-- KEYS: 1 tenant leases, 2 key leases (when the key is counted); ARGV: 1 member, 2 lease ms
local renewed = 0
for _, k in ipairs(KEYS) do
  renewed = renewed + redis.call('ZADD', k, 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1])
end
return renewed
