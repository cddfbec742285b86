-- Settlement: releases the lease and charges what was used. Tokens reserved but not used go
-- back to the bucket; tokens used beyond the reservation (a worker ignoring max_tokens) are
-- charged. Safe to run after the lease expired: what the expiry released is not released twice.
-- Runs once per lease: a retry after a timeout (the first run may have happened) does nothing.
-- KEYS: 1 tenant state, 2 tenant leases, 3 this lease's "settled" mark, 4 key state (kept
--       for its month's usage even when the key is not counted at admission: a quota set on
--       it later starts from what it used; not passed to a cancellation of such a key),
--       5 key leases when the key was counted
-- ARGV: 1 lease member, 2 reserved tokens, 3 used tokens, 4 credit held, 5 cost (nanos),
--       6 month, 7-10 tenant limits, 11-14 key limits, 15 prepaid (1/0), 16 mark's life (ms),
--       17 cancel (1/0): an admission whose answer was lost (it timed out; the request was
--       decided by the fallback instead) is undone where it ran, and nowhere else: a subject
--       holding no lease by that name is left alone, one holding it gets its request back.
--       The mark this sets also stops that admission if it has not run yet (admit.lua).

if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', tonumber(ARGV[16])) then return 0 end

local member = ARGV[1]
local reserved = tonumber(ARGV[2])
local used = tonumber(ARGV[3])
local credit = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local month = tonumber(ARGV[6])
local tenant = load(KEYS[1], KEYS[2],
  {tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])}, month, 0)
local subjects = {tenant}
if #KEYS == 5 then
  subjects[2] = load(KEYS[4], KEYS[5],
    {tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])}, month, 0)
elseif #KEYS == 4 then
  -- Not counted: only its month.
  local f = redis.call('HMGET', KEYS[4], 'm', 'mu')
  local m, mu = num(f[1], month), num(f[2], 0)
  if month > m then m, mu = month, 0 end
  if m == month then mu = mu + used end
  redis.call('HSET', KEYS[4], 'm', m, 'mu', mu)
  redis.call('PEXPIRE', KEYS[4], KEEP_MS)
end

local cancel = ARGV[17] == '1'
for _, s in ipairs(subjects) do
  local held = redis.call('ZREM', s.lease_key, member) == 1
  if held then
    s.mr = s.mr - reserved
    if s.mr < 0 then s.mr = 0 end
    if s == tenant then
      s.ch = s.ch - credit
      if s.ch < 0 then s.ch = 0 end
    end
  end
  if cancel then
    -- Undo only where it was admitted: its request and its tokens back to the buckets.
    if held then
      s.rl = math.min(s.rl + 1, s.rpm)
      s.tl = math.min(s.tl + reserved, s.tpm)
    end
  else
    -- Usage counts in the month it was settled in, unless that month is already over here.
    if s.month == month then s.mu = s.mu + used end
    s.tl = math.min(s.tl + reserved - used, s.tpm)
  end
end
if not cancel and ARGV[15] == '1' and tenant.bal ~= nil then tenant.bal = tenant.bal - cost end
for _, s in ipairs(subjects) do save(s, false) end
return 1
