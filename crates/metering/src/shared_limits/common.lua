-- Shared by every script (prepended to each). Redis runs a script alone, so each one reads,
-- decides and writes with no other replica in between. Time is Redis's own (TIME), so the
-- replicas' clocks do not matter. Numbers are Lua doubles: money (nano-dollars) is exact up to
-- 2^53, about 9 million dollars of balance.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Limit states are kept for 40 days after their last use: a month's quota outlives its month.
local KEEP_MS = 40 * 86400 * 1000

local function num(v, default)
  local n = tonumber(v)
  if n == nil then return default end
  return n
end

-- A bucket that refills continuously: capacity = the per-minute limit. A changed limit keeps
-- the fill ratio, as the in-process limiter does.
local function refill(level, updated, old_cap, cap)
  if level == nil then return cap end
  if old_cap ~= nil and old_cap ~= cap then
    if old_cap > 0 then level = level / old_cap * cap else level = cap end
  end
  local dt = now - (updated or now)
  if dt < 0 then dt = 0 end
  level = level + dt * cap / 60000
  if level > cap then level = cap end
  return level
end

-- A lease member is "id|tokens|credit": what it holds is released when it expires.
local function held(member)
  local tokens, credit = string.match(member, '^[^|]*|(%d+)|(%d+)$')
  return num(tokens, 0), num(credit, 0)
end

-- Loads one subject (a tenant or a key): buckets refilled to now, the month rolled, expired
-- leases released. `limits` is {rpm, tpm, conc, monthly}; `seed` is the ledger's tokens this
-- month (a floor: Redis may be ahead of the ledger, never behind it).
local function load(state_key, lease_key, limits, month, seed)
  local f = redis.call('HMGET', state_key, 'rl', 'rc', 'rt', 'tl', 'tc', 'tt', 'm', 'mu', 'mr', 'ch', 'bal')
  local s = {state_key = state_key, lease_key = lease_key}
  s.rpm, s.tpm, s.conc, s.monthly = limits[1], limits[2], limits[3], limits[4]
  s.rl = refill(tonumber(f[1]), tonumber(f[3]), tonumber(f[2]), s.rpm)
  s.tl = refill(tonumber(f[4]), tonumber(f[6]), tonumber(f[5]), s.tpm)
  s.month = num(f[7], month)
  s.mu = num(f[8], 0)
  s.mr = num(f[9], 0)
  s.ch = num(f[10], 0)
  s.bal = tonumber(f[11])
  -- Months only roll forward: a settlement of a request admitted last month (a stream open at
  -- midnight UTC) must not take the state back to that month and wipe this one.
  if month > s.month then
    s.month = month
    s.mu = 0
  end
  if s.month == month and seed > s.mu then s.mu = seed end
  local expired = redis.call('ZRANGEBYSCORE', lease_key, '-inf', now)
  for _, m in ipairs(expired) do
    local tokens, credit = held(m)
    s.mr = s.mr - tokens
    s.ch = s.ch - credit
  end
  if s.mr < 0 then s.mr = 0 end
  if s.ch < 0 then s.ch = 0 end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', lease_key, '-inf', now) end
  s.active = redis.call('ZCARD', lease_key)
  return s
end

-- Writes a subject back. `keep` (at admission; settlement follows within a lease) renews how
-- long its state outlives its last use. Every call counts: a script's cost is its calls.
local function save(s, keep)
  -- Numbers go as they are: Redis writes a Lua number as %.17g, plain digits for every
  -- integer below 1e17 (nano-dollars: 100 million dollars), and exact for doubles.
  if s.bal ~= nil then
    redis.call('HSET', s.state_key, 'rl', s.rl, 'rc', s.rpm, 'rt', now, 'tl', s.tl, 'tc', s.tpm,
      'tt', now, 'm', s.month, 'mu', s.mu, 'mr', s.mr, 'ch', s.ch, 'bal', s.bal)
  else
    redis.call('HSET', s.state_key, 'rl', s.rl, 'rc', s.rpm, 'rt', now, 'tl', s.tl, 'tc', s.tpm,
      'tt', now, 'm', s.month, 'mu', s.mu, 'mr', s.mr, 'ch', s.ch)
  end
  if keep then redis.call('PEXPIRE', s.state_key, KEEP_MS) end
end
