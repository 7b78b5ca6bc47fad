--[[
  Keep the newest matched lines of each failing address of the jails that notify, so the mail or
  webhook of a ban can show the cluster's view (which hosts, which lines). Bounded twice: per
  address a list of at most `perAddr` entries, and per jail at most `addrs` addresses (those
  updated longest ago are dropped first). A list expires `ttl` after it was created (its newest
  failures are what matter, and findtime is shorter than ttl), the jail's index `ttl` after its
  last update. A flood of distinct addresses therefore costs at most addrs x perAddr lines per
  jail, not one per attacker.

  Per address this is one RPUSH, plus a PEXPIRE when the list is new and an LTRIM when it is full;
  the index is updated with one ZADD per jail: Redis runs this between counting calls, and each
  command a Lua script calls costs about a microsecond.

    Input:
      KEYS[1] the first jail's matches index (a key the script writes; it names the call's slot)
      ARGV[1] matches key prefix (jail, or jail|addr, appended)
      ARGV[2] now ms   ARGV[3] J, the number of jails, then per jail:
        name, ttl ms, perAddr, addrs, A (its addresses), then per address: addr, K, then K entries
        (JSON `[time, host, line]`, written by the caller; K <= perAddr)
    Output: number of addresses dropped to stay within the jails' bounds
]]
local rcall = redis.call
local prefix = ARGV[1]
local now = tonumber(ARGV[2])
local o = 4
local dropped = 0

-- DEL or ZADD with many arguments, in slices that unpack() handles.
local function inSlices(head, items)
  for from = 1, #items, 2000 do
    local args = { unpack(head) }
    for i = from, math.min(#items, from + 1999) do args[#args + 1] = items[i] end
    rcall(unpack(args))
  end
end

for _ = 1, tonumber(ARGV[3]) do
  local jail, ttl, perAddr, maxAddrs, numAddrs = ARGV[o], ARGV[o + 1], tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4])
  o = o + 5
  local index = prefix .. jail
  local scored = {}
  for _ = 1, numAddrs do
    local addr, k = ARGV[o], tonumber(ARGV[o + 1])
    local key = prefix .. jail .. '|' .. addr
    local len = rcall('RPUSH', key, unpack(ARGV, o + 2, o + 1 + k))
    if len == k then rcall('PEXPIRE', key, ttl) end
    if len > perAddr then rcall('LTRIM', key, -perAddr, -1) end
    scored[#scored + 1] = now
    scored[#scored + 1] = addr
    o = o + 2 + k
  end
  inSlices({ 'ZADD', index }, scored)
  local excess = rcall('ZCARD', index) - maxAddrs
  if excess > 0 then
    local old = rcall('ZPOPMIN', index, excess)
    local gone = {}
    for i = 1, #old, 2 do gone[#gone + 1] = prefix .. jail .. '|' .. old[i] end
    inSlices({ 'DEL' }, gone)
    dropped = dropped + excess
  end
  -- Addresses whose lists have expired: one bounded sweep per call.
  rcall('ZREMRANGEBYSCORE', index, '-inf', now - tonumber(ttl))
  rcall('PEXPIRE', index, ttl)
end
return dropped
