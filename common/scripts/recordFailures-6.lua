--[[
  Count a batch of failures cluster-wide in a sliding window per (jail, address), ban when the
  jail's policy says so, and acknowledge the stream entries, all atomically. A failure is counted
  once even when it is delivered again, or sent twice by its agent: the agent's event id is the
  window member, and ZADD of a present member adds nothing.

    Input:
      KEYS[1] failures stream   KEYS[2] bans hash       KEYS[3] ban expiry zset
      KEYS[4] decisions stream  KEYS[5] stats hash      KEYS[6] failing-addresses prefix (jail appended)
      ARGV[1] consumer group    ARGV[2] now ms (Redis clock)   ARGV[3] window key prefix
      ARGV[4] decisions maxlen  ARGV[5] protocol version       ARGV[6] history key prefix
      ARGV[7] history retention ms   ARGV[8] window-hosts key prefix   ARGV[9] random seed
      ARGV[10] number of jail policies P, then per policy:
        name, findtime ms, maxretry, minhosts, overalljails (0/1), rndtime ms, counts bans (0/1),
        T, then T ban durations in ms indexed by earlier bans (last one repeats; -1 permanent)
      then N, the number of failures, then one argument per failure, its fields joined by tabs:
        event id, jail, addr, time ms, host
        (one packed argument instead of five: each argument costs more to pass than to split)
      then the ids of the stream entries (reports) to acknowledge
    Output:
      one result per failure: its count in the window (below maxretry it may still include
        failures that have left the window; they are trimmed once the count could ban), or
        -1 counted but already banned (reported once the count reaches maxretry),
        -2 outside the window (too old), -3 duplicate delivery, -4 unknown jail
      followed by the bans made as triples: jail, addr, until (ms, -1 permanent)
    A window holds failures with time > now - findtime; a failure from the future counts at now.
    A jail that counts bans (cluster recidive) gets one failure for every ban in any other jail.
]]
local rcall = redis.call
local bansKey, expiryKey, decisionsKey, statsKey = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group = ARGV[1]
local now = tonumber(ARGV[2])
local windowPrefix = ARGV[3]
local maxlen = ARGV[4]
local version = ARGV[5]
local historyPrefix = ARGV[6]
local retention = tonumber(ARGV[7])
local hostsPrefix = ARGV[8]
math.randomseed(tonumber(ARGV[9]))
--- @include "includes/add-decision"
--- @include "includes/record-ban"

local policies, recidives = {}, {}
local o = 11
for _ = 1, tonumber(ARGV[10]) do
  local p = { name = ARGV[o], findtime = tonumber(ARGV[o + 1]), maxretry = tonumber(ARGV[o + 2]),
    minhosts = tonumber(ARGV[o + 3]), overall = ARGV[o + 4] == '1', rnd = tonumber(ARGV[o + 5]),
    countsBans = ARGV[o + 6] == '1', durations = {} }
  local t = tonumber(ARGV[o + 7])
  for k = 1, t do p.durations[k] = tonumber(ARGV[o + 7 + k]) end
  o = o + 8 + t
  policies[p.name] = p
  if p.countsBans then recidives[#recidives + 1] = p end
end

local bans = {}
local perJail = {}
local countFailure

local function banAddress(p, addr, origin, failures)
  local prior = earlierBans(addr, p.name, p.overall, now)
  local duration = p.durations[math.min(prior + 1, #p.durations)]
  local untilMs = -1
  if duration >= 0 then
    if p.rnd > 0 then duration = duration + math.random(0, p.rnd) end
    untilMs = now + duration
  end
  local reason = failures .. ' failures in ' .. math.floor(p.findtime / 1000) .. 's'
  if prior > 0 then reason = reason .. ', ban #' .. (prior + 1) end
  recordBan(p.name, addr, now, untilMs, reason, origin, failures)
  bans[#bans + 1] = p.name
  bans[#bans + 1] = addr
  bans[#bans + 1] = untilMs
  if not p.countsBans then
    for _, r in ipairs(recidives) do countFailure(r, addr, now, 'ban:' .. p.name .. ':' .. now, origin) end
  end
end

countFailure = function(p, addr, t, eid, host)
  if t > now then t = now end
  if t <= now - p.findtime then return -2 end
  local banId = p.name .. '|' .. addr
  local window = windowPrefix .. banId
  if rcall('ZADD', window, t, eid .. '|' .. host) == 0 then return -3 end
  local count = rcall('ZCARD', window)
  -- Failures that left the window are dropped only when they could make a difference: below
  -- maxretry even the stale ones cannot ban, so the trim (a Redis call per failure) waits until
  -- the raw count reaches it. A window thus never holds more than maxretry - 1 members untrimmed.
  if count >= p.maxretry then
    rcall('ZREMRANGEBYSCORE', window, '-inf', now - p.findtime)
    count = rcall('ZCARD', window)
    -- A window that cannot ban (minhosts not met) must not grow without bound under a flood.
    local cap = math.max(1000, p.maxretry)
    if count > cap then
      rcall('ZREMRANGEBYRANK', window, 0, count - cap - 1)
      count = cap
    end
  end
  -- Counters and the jail's currently-failing set are written once per jail per batch, below:
  -- per failure they were half of this script's Redis calls.
  local touched = perJail[p.name]
  if not touched then
    touched = { p = p, failed = 0, failing = {} }
    perJail[p.name] = touched
  end
  touched.failed = touched.failed + 1
  touched.failing[addr] = t
  local enoughHosts = true
  local hostsKey
  if p.minhosts > 1 then
    hostsKey = hostsPrefix .. banId
    rcall('HSET', hostsKey, host, t)
    rcall('PEXPIRE', hostsKey, p.findtime)
    local distinct = 0
    local all = rcall('HGETALL', hostsKey)
    for j = 1, #all, 2 do
      if tonumber(all[j + 1]) > now - p.findtime then distinct = distinct + 1 else rcall('HDEL', hostsKey, all[j]) end
    end
    enoughHosts = distinct >= p.minhosts
  end
  -- Whether the address is banned already matters only once it could be banned: checking at the
  -- threshold instead of for every failure saves a Redis call per failure. Failures of a banned
  -- address are counted (fail2ban counts them too); they cannot ban it twice.
  if count >= p.maxretry and enoughHosts and rcall('HEXISTS', bansKey, banId) == 1 then
    rcall('PEXPIRE', window, p.findtime)
    return -1
  end
  if count >= p.maxretry and enoughHosts then
    rcall('DEL', window)
    if hostsKey then rcall('DEL', hostsKey) end
    touched.failing[addr] = false
    banAddress(p, addr, host, count)
  else
    rcall('PEXPIRE', window, p.findtime)
  end
  return count
end

local results = {}
local n = tonumber(ARGV[o])
o = o + 1
for i = o, o + n - 1 do
  local eid, jail, addr, t, host = string.match(ARGV[i], '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  local p = policies[jail]
  if p then results[#results + 1] = countFailure(p, addr, tonumber(t), eid, host) else results[#results + 1] = -4 end
end
for name, touched in pairs(perJail) do
  rcall('HINCRBY', statsKey, name .. ':failed', touched.failed)
  local failing = KEYS[6] .. name
  local add, del = { 'ZADD', failing }, { 'ZREM', failing }
  for addr, t in pairs(touched.failing) do
    if t then
      add[#add + 1] = t
      add[#add + 1] = addr
    else
      del[#del + 1] = addr
    end
    -- Keep each call's argument list well inside Lua's unpack limit.
    if #add >= 4000 then rcall(unpack(add)); add = { 'ZADD', failing } end
    if #del >= 4000 then rcall(unpack(del)); del = { 'ZREM', failing } end
  end
  if #add > 2 then rcall(unpack(add)) end
  if #del > 2 then rcall(unpack(del)) end
  rcall('ZREMRANGEBYSCORE', failing, '-inf', now - touched.p.findtime)
  rcall('PEXPIRE', failing, touched.p.findtime)
end

if #ARGV >= o + n then rcall('XACK', KEYS[1], group, unpack(ARGV, o + n)) end

for i = 1, #bans do results[#results + 1] = bans[i] end
return results
