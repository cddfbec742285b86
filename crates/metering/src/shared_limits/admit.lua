-- Admission: checks the tenant, then the key, then prepaid credit; takes everything or nothing.
-- KEYS: 1 tenant state, 2 tenant leases, 3 this lease's "settled" mark, and only when the
--       key's own limits can bind (otherwise the tenant's decide alone): 4 key state, 5 key leases
-- ARGV: 1 lease member ("id|tokens|credit"), 2 tokens, 3 credit (nanos), 4 lease ms, 5 month,
--       6-9 tenant rpm, tpm, concurrency, monthly quota (0 = none), 10 tenant month seed,
--       11-14 key limits, 15 key month seed, 16 prepaid (1/0), 17 balance seed (nanos)
-- Returns {code, a, b, tenant requests level, tenant tokens level, key requests, key tokens},
-- levels in thousandths. Codes: 0 admitted; 1 requests (a = ms to wait); 2 tokens (a = ms);
-- 3 too large (a = needed, b = limit); 4 concurrency (a = limit); 5 monthly quota (a = limit);
-- 6 credit (a = balance left after what requests in flight hold); 7 already cancelled (the
-- replica gave up waiting for this answer and undid it first: nothing is taken).

if redis.call('EXISTS', KEYS[3]) == 1 then return {7, 0, 0, 0, 0, 0, 0} end

local member = ARGV[1]
local tokens = tonumber(ARGV[2])
local credit = tonumber(ARGV[3])
local lease_ms = tonumber(ARGV[4])
local month = tonumber(ARGV[5])
local tenant = load(KEYS[1], KEYS[2],
  {tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])}, month, tonumber(ARGV[10]))
local subjects = {tenant}
local key = nil
if #KEYS == 5 then
  key = load(KEYS[4], KEYS[5],
    {tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])}, month, tonumber(ARGV[15]))
  subjects[2] = key
end
local prepaid = ARGV[16] == '1'
-- The balance lives here only while the tenant is prepaid: seeded from the store when it
-- becomes so, dropped when it stops (costs while postpaid are not taken from it here).
if not prepaid then
  if tenant.bal ~= nil then redis.call('HDEL', tenant.state_key, 'bal') end
  tenant.bal = nil
elseif tenant.bal == nil then
  tenant.bal = tonumber(ARGV[17])
end

-- A key not counted here reports its tenant's levels (it is never the tighter one).
local function levels()
  local k = key or tenant
  return math.floor(tenant.rl * 1000), math.floor(tenant.tl * 1000),
         math.floor(k.rl * 1000), math.floor(k.tl * 1000)
end

local function refuse(code, a, b)
  for _, s in ipairs(subjects) do save(s, true) end
  local trl, ttl, krl, ktl = levels()
  return {code, a or 0, b or 0, trl, ttl, krl, ktl}
end

local function wait_ms(missing, per_minute)
  return math.ceil(missing * 60000 / per_minute)
end

if prepaid then
  local left = tenant.bal - tenant.ch
  local need = credit
  if need < 1 then need = 1 end
  if left < need then return refuse(6, left) end
end

for _, s in ipairs(subjects) do
  if s.active >= s.conc then return refuse(4, s.conc) end
  if s.monthly > 0 and s.mu + s.mr + tokens > s.monthly then return refuse(5, s.monthly) end
  if s.rl < 1 then
    if s.rpm <= 0 then return refuse(1, 60000) end
    return refuse(1, wait_ms(1 - s.rl, s.rpm))
  end
  if tokens > s.tl then
    if tokens > s.tpm or s.tpm <= 0 then return refuse(3, tokens, s.tpm) end
    return refuse(2, wait_ms(tokens - s.tl, s.tpm))
  end
end

for _, s in ipairs(subjects) do
  s.rl = s.rl - 1
  s.tl = s.tl - tokens
  s.mr = s.mr + tokens
  redis.call('ZADD', s.lease_key, now + lease_ms, member)
  redis.call('PEXPIRE', s.lease_key, KEEP_MS)
end
if prepaid then tenant.ch = tenant.ch + credit end
return refuse(0)
