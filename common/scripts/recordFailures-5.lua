--[[
  Count a batch of failures cluster-wide in a sliding window per (jail, address), ban when the
  jail's policy says so, and acknowledge the stream entries, all atomically. A failure is counted
  once even when it is delivered again, or sent twice by its agent: its event id and host are kept
  in the window, and a failure already there adds nothing.

  Windows: one hash per jail (window key prefix .. jail), field = address, value = the window's
  failures as `<time>,<event id>,<host>;` entries (neither ids nor host names can hold ',' or ';').
  A key with a TTL per (jail, address) cost a key allocation, a ZADD and a PEXPIRE per failure,
  which was most of this script's Redis time; a batch now reads its windows with one HMGET per
  jail and writes them back with one HSET. Fields leave with their address' last failure: the
  jail's failing set (address -> time of its newest failure) says which windows have gone stale,
  and the whole hash expires findtime after the jail's last batch.

  Redis runs one script at a time, so this script's own work is what bounds the cluster's
  counting rate. The caller therefore does everything that needs no state: it groups the batch by
  jail and address and pre-formats every window entry, so that per failure this script does a
  lookup, a search and one string concatenation (every new Lua string costs ~0.25 us here).

    Input:
      KEYS[1] host registry set KEYS[2] bans hash       KEYS[3] ban expiry zset
      KEYS[4] decisions stream  KEYS[5] stats hash
      ARGV[1] consumer group    ARGV[2] now ms (Redis clock)   ARGV[3] window key prefix
      ARGV[4] decisions maxlen  ARGV[5] protocol version       ARGV[6] history key prefix
      ARGV[7] history retention ms   ARGV[8] window-hosts key prefix   ARGV[9] random seed
      ARGV[10] per-host key prefix   ARGV[11] heartbeat liveness ms    ARGV[12] addresses per heartbeat
      ARGV[13] heartbeat bytes at most
      ARGV[14] hash where bans wait for their signature ('' when decisions are not signed: they
        are published at once; see includes/record-ban): this call's parked bans are one field,
        `<now>:<ARGV[9]>`
      ARGV[15] failing-addresses key prefix (jail appended)
      ARGV[16] number of jail policies P, then per policy:
        name, findtime ms, maxretry, minhosts, overalljails (0/1), rndtime ms, counts bans (0/1),
        ignoreself (0/1), T, then T ban durations in ms indexed by earlier bans (last one repeats;
        -1 permanent)
      then J, the number of jails in the batch, and per jail:
        name, A (its addresses), then per address: addr, K (its failures), then per failure two
        arguments: time ms, and `,<event id>,<host>;` (the window entry without its time)
      then the stream entries (reports) to acknowledge, per host stream: key, N, then N ids
    Output:
      one result per failure, in input order: its count in the window (below maxretry it may
        still include failures that have left the window; they are trimmed once the count could
        ban), or -1 counted but already banned (reported once the count reaches maxretry),
        -2 outside the window (too old), -3 duplicate delivery, -4 unknown jail, -5 counted and
        not banned because a live host claims the address (ignoreself)
      followed by the bans made as triples: jail, addr, until (ms, -1 permanent), parked for
        their signature when ARGV[14] is set (the named codes: RESULT in the script, COUNT_RESULT in
        index.ts)
    A window holds failures with time > now - findtime; a failure from the future counts at now.
    Once its count reaches maxretry a window is trimmed to the failures still inside it, and to
    the newest maxretry of them (more cannot change a decision), so a window that cannot ban
    (minhosts not met, or the address is banned already) stays small under a flood.
    A jail that counts bans (cluster recidive) gets one failure for every ban in any other jail.
    ignoreself is decided here, at the moment of the ban, from the live heartbeats of the
    registered hosts: a coordinator's copy of the fleet's addresses, refreshed every few seconds,
    let a host that had just started be banned by its peers' reports.
]]
local rcall = redis.call
--- @include "includes/add-decision"
--- @include "includes/signed-fields"
--- @include "includes/record-ban"

-- Outcome codes per failure (COUNT_RESULT in index.ts); a positive number is the window's count.
local RESULT = { alreadyBanned = -1, tooOld = -2, duplicate = -3, unknownJail = -4, fleetMember = -5 }
local statsKey = KEYS[5]
local group = ARGV[1]
local now = tonumber(ARGV[2])
local windowPrefix = ARGV[3]
local hostsPrefix = ARGV[8]
math.randomseed(tonumber(ARGV[9]))
local hostKeyPrefix = ARGV[10]
local aliveMs = tonumber(ARGV[11])
local maxAddrs = tonumber(ARGV[12])
local maxHeartbeat = tonumber(ARGV[13])
local failingPrefix = ARGV[15]
local store = banStore(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[6], ARGV[7], ARGV[4], ARGV[5], ARGV[14])

local policies, recidives = {}, {}
local o = 17
for _ = 1, tonumber(ARGV[16]) do
  local p = { name = ARGV[o], findtime = tonumber(ARGV[o + 1]), maxretry = tonumber(ARGV[o + 2]),
    minhosts = tonumber(ARGV[o + 3]), overall = ARGV[o + 4] == '1', rnd = tonumber(ARGV[o + 5]),
    countsBans = ARGV[o + 6] == '1', ignoreself = ARGV[o + 7] == '1', durations = {} }
  local t = tonumber(ARGV[o + 8])
  for k = 1, t do p.durations[k] = tonumber(ARGV[o + 8 + k]) end
  o = o + 9 + t
  policies[p.name] = p
  if p.countsBans then recidives[#recidives + 1] = p end
end

-- address -> host, from the live heartbeats of the registered hosts; read once per call, and only
-- by a call that is about to ban (most calls ban nothing).
local fleet
local function fleetAddresses()
  if fleet then return fleet end
  fleet = {}
  local hosts = rcall('SMEMBERS', KEYS[1])
  for from = 1, #hosts, 1000 do
    local args = { 'MGET' }
    for i = from, math.min(#hosts, from + 999) do args[#args + 1] = hostKeyPrefix .. hosts[i] .. ':hb' end
    local got = rcall(unpack(args))
    for i = 1, #got do
      local raw = got[i]
      if raw and #raw <= maxHeartbeat then
        local ok, hb = pcall(cjson.decode, raw)
        -- Only what a validated heartbeat holds: its own host, a time near now, a short list of strings.
        if ok and type(hb) == 'table' and hb.host == hosts[from + i - 1] and type(hb.seenAt) == 'number'
          and math.abs(now - hb.seenAt) <= aliveMs and type(hb.addrs) == 'table' then
          for k = 1, math.min(#hb.addrs, maxAddrs) do
            local a = hb.addrs[k]
            if type(a) == 'string' and #a <= 45 then fleet[a] = hb.host end
          end
        end
      end
    end
  end
  return fleet
end

local bans = {}
-- jail name -> { p, key, values = { addr -> window string or false }, dirty = { addr -> true },
--   failed = failures counted, failing = { addr -> newest failure time, or false once banned } }
local jails = {}
local countFailure

local function jailState(p)
  local j = jails[p.name]
  if not j then
    j = { p = p, key = windowPrefix .. p.name, values = {}, dirty = {}, failed = 0, failing = {} }
    jails[p.name] = j
  end
  return j
end

local function entries(v)
  local n, i = 0, 1
  while true do
    i = string.find(v, ';', i, true)
    if not i then return n end
    n = n + 1
    i = i + 1
  end
end

-- Entries still inside the window, at most `cap` of them, newest kept.
local function trimWindow(v, floor, cap)
  local kept = {}
  for t, rest in string.gmatch(v, '(%d+)(,[^;]*;)') do
    local tn = tonumber(t)
    if tn > floor then kept[#kept + 1] = { tn, t .. rest } end
  end
  if #kept > cap then
    table.sort(kept, function(a, b) return a[1] < b[1] end)
    local newest = {}
    for i = #kept - cap + 1, #kept do newest[#newest + 1] = kept[i] end
    kept = newest
  end
  local parts = {}
  for i = 1, #kept do parts[i] = kept[i][2] end
  return table.concat(parts), #kept
end

local function banAddress(p, addr, origin, failures)
  local prior = earlierBans(store, addr, p.name, p.overall, now)
  local duration = p.durations[math.min(prior + 1, #p.durations)]
  local untilMs = -1
  if duration >= 0 then
    if p.rnd > 0 then duration = duration + math.random(0, p.rnd) end
    untilMs = now + duration
  end
  local reason = failures .. ' failures in ' .. math.floor(p.findtime / 1000) .. 's'
  if prior > 0 then reason = reason .. ', ban #' .. (prior + 1) end
  if untilMs > now + MAX_BAN_MS then untilMs = now + MAX_BAN_MS end
  recordBan(store, p.name, addr, now, untilMs, reason, origin, failures)
  bans[#bans + 1] = p.name
  bans[#bans + 1] = addr
  bans[#bans + 1] = untilMs
  if not p.countsBans then
    local tstr = string.format('%d', now)
    for _, r in ipairs(recidives) do
      countFailure(r, jailState(r), addr, now, tstr, ',ban:' .. p.name .. ':' .. tstr .. ',' .. origin .. ';')
    end
  end
end

-- Count one failure of addr in jail state j; `tag` is its window entry without the time.
countFailure = function(p, j, addr, t, tstr, tag)
  if t > now then
    t = now
    tstr = string.format('%d', now)
  end
  if t <= now - p.findtime then return RESULT.tooOld end
  local v = j.values[addr]
  if v == nil then
    v = rcall('HGET', j.key, addr)
    j.values[addr] = v
  end
  local count
  if v then
    if string.find(v, tag, 1, true) then return RESULT.duplicate end
    count = entries(v) + 1
    v = v .. tstr .. tag
  else
    count = 1
    v = tstr .. tag
  end
  -- Failures that left the window are dropped only when they could make a difference: below
  -- maxretry even the stale ones cannot ban. A window thus never holds more than maxretry
  -- entries, stale ones included.
  if count >= p.maxretry then v, count = trimWindow(v, now - p.findtime, p.maxretry) end
  j.failed = j.failed + 1
  local seen = j.failing[addr]
  if not seen or t > seen then j.failing[addr] = t end
  local enoughHosts = true
  local hostsKey
  if p.minhosts > 1 then
    hostsKey = hostsPrefix .. p.name .. '|' .. addr
    rcall('HSET', hostsKey, string.match(tag, ',([^,]*);$'), t)
    rcall('PEXPIRE', hostsKey, p.findtime)
    local distinct = 0
    local all = rcall('HGETALL', hostsKey)
    for k = 1, #all, 2 do
      if tonumber(all[k + 1]) > now - p.findtime then distinct = distinct + 1 else rcall('HDEL', hostsKey, all[k]) end
    end
    enoughHosts = distinct >= p.minhosts
  end
  j.dirty[addr] = true
  -- Whether the address is banned already matters only once it could be banned: checking at the
  -- threshold instead of for every failure saves a Redis call per failure. Failures of a banned
  -- address are counted (fail2ban counts them too); they cannot ban it twice.
  if count >= p.maxretry and enoughHosts and rcall('HEXISTS', store.bans, p.name .. '|' .. addr) == 1 then
    j.values[addr] = v
    return RESULT.alreadyBanned
  end
  if count >= p.maxretry and enoughHosts and p.ignoreself and not p.countsBans and fleetAddresses()[addr] then
    j.values[addr] = v
    return RESULT.fleetMember
  end
  if count >= p.maxretry and enoughHosts then
    j.values[addr] = false
    if hostsKey then rcall('DEL', hostsKey) end
    j.failing[addr] = false
    banAddress(p, addr, string.match(tag, ',([^,]*);$'), count)
  else
    j.values[addr] = v
  end
  return count
end

-- Keep each call's argument list well inside Lua's unpack limit: `head` (command, key, options)
-- then `items` in slices of `per`.
local function callInChunks(head, items, per)
  local args = { unpack(head) }
  for i = 1, #items do
    args[#args + 1] = items[i]
    if #args - #head >= per then rcall(unpack(args)); args = { unpack(head) } end
  end
  if #args > #head then rcall(unpack(args)) end
end

-- Split a table of key -> value (false: to delete) into a flat list of pairs, in the order the
-- command wants them (field value, or score member), and a list of keys to delete.
local function partition(map, scoreFirst)
  local pairsList, gone = {}, {}
  for key, value in pairs(map) do
    if not value then
      gone[#gone + 1] = key
    elseif scoreFirst then
      pairsList[#pairsList + 1] = value
      pairsList[#pairsList + 1] = key
    else
      pairsList[#pairsList + 1] = key
      pairsList[#pairsList + 1] = value
    end
  end
  return pairsList, gone
end

local results = {}
local numJails = tonumber(ARGV[o])
o = o + 1
for _ = 1, numJails do
  local p = policies[ARGV[o]]
  local numAddrs = tonumber(ARGV[o + 1])
  o = o + 2
  if not p then
    for _ = 1, numAddrs do
      local k = tonumber(ARGV[o + 1])
      for _ = 1, k do results[#results + 1] = RESULT.unknownJail end
      o = o + 2 + 2 * k
    end
  else
    local j = jailState(p)
    -- Every window of the jail's addresses in one read (in slices, for unpack's sake).
    -- (Not those a recidive count of this very call has already loaded, and maybe changed.)
    local pending = {}
    local scan = o
    for _ = 1, numAddrs do
      if j.values[ARGV[scan]] == nil then pending[#pending + 1] = ARGV[scan] end
      scan = scan + 2 + 2 * tonumber(ARGV[scan + 1])
    end
    for from = 1, #pending, 1000 do
      local args = { 'HMGET', j.key }
      for i = from, math.min(#pending, from + 999) do args[#args + 1] = pending[i] end
      local got = rcall(unpack(args))
      for i = 1, #got do j.values[pending[from + i - 1]] = got[i] end
    end
    for _ = 1, numAddrs do
      local addr = ARGV[o]
      local k = tonumber(ARGV[o + 1])
      o = o + 2
      for _ = 1, k do
        local tstr = ARGV[o]
        results[#results + 1] = countFailure(p, j, addr, tonumber(tstr), tstr, ARGV[o + 1])
        o = o + 2
      end
    end
  end
end

for name, j in pairs(jails) do
  local changed = {}
  for addr in pairs(j.dirty) do changed[addr] = j.values[addr] end
  local set, del = partition(changed, false)
  callInChunks({ 'HSET', j.key }, set, 4000)
  callInChunks({ 'HDEL', j.key }, del, 4000)
  rcall('HINCRBY', statsKey, name .. ':failed', j.failed)
  local failing = failingPrefix .. name
  local findtime = j.p.findtime
  local add, gone = partition(j.failing, true)
  -- GT: a late-arriving older failure must not make an address look stale while newer ones are in its window.
  callInChunks({ 'ZADD', failing, 'GT' }, add, 4000)
  callInChunks({ 'ZREM', failing }, gone, 4000)
  -- Windows whose newest failure has left them: a bounded share per batch, so a flood that
  -- ends all at once costs no single long call (the hash's TTL catches the rest).
  local stale = rcall('ZRANGEBYSCORE', failing, '-inf', now - findtime, 'LIMIT', 0, 2000)
  if #stale > 0 then
    callInChunks({ 'HDEL', j.key }, stale, 4000)
    callInChunks({ 'ZREM', failing }, stale, 4000)
  end
  rcall('PEXPIRE', failing, findtime)
  rcall('PEXPIRE', j.key, findtime)
end

while o <= #ARGV do
  local n = tonumber(ARGV[o + 1])
  rcall('XACK', ARGV[o], group, unpack(ARGV, o + 2, o + 1 + n))
  o = o + 2 + n
end

parkBans(store, now, ARGV[9])
for i = 1, #bans do results[#results + 1] = bans[i] end
return results
