--[[
  Keep the newest matched lines of each failing address of the jails that notify, so the mail or
  webhook of a ban can show the cluster's view (which hosts, which lines). Bounded twice: per
  address a list of at most `perAddr` entries, and per jail at most `addrs` addresses (the ones
  updated longest ago are dropped first), both expiring `ttl` after their last update. A flood of
  distinct addresses therefore costs at most addrs x perAddr lines per jail, not one per attacker.

    Input:
      KEYS[1] matches prefix (jail, or jail|addr, appended)
      ARGV[1] now ms   ARGV[2] J, the number of jails, then per jail:
        name, ttl ms, perAddr, addrs, A (its addresses), then per address: addr, K, then K entries
        (JSON `[time, host, line]`, written by the caller)
    Output: number of addresses dropped to stay within the jails' bounds
]]
local rcall = redis.call
local prefix = KEYS[1]
local now = tonumber(ARGV[1])
local o = 3
local dropped = 0
for _ = 1, tonumber(ARGV[2]) do
  local jail, ttl, perAddr, maxAddrs, numAddrs = ARGV[o], ARGV[o + 1], tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4])
  o = o + 5
  local index = prefix .. jail
  for _ = 1, numAddrs do
    local addr, k = ARGV[o], tonumber(ARGV[o + 1])
    local key = prefix .. jail .. '|' .. addr
    -- At most perAddr of them matter; the caller already cut the batch's share to that.
    rcall('RPUSH', key, unpack(ARGV, o + 2, o + 1 + k))
    rcall('LTRIM', key, -perAddr, -1)
    rcall('PEXPIRE', key, ttl)
    rcall('ZADD', index, now, addr)
    o = o + 2 + k
  end
  local excess = rcall('ZCARD', index) - maxAddrs
  if excess > 0 then
    local old = rcall('ZPOPMIN', index, excess)
    for i = 1, #old, 2 do rcall('DEL', prefix .. jail .. '|' .. old[i]) end
    dropped = dropped + excess
  end
  rcall('ZREMRANGEBYSCORE', index, '-inf', now - tonumber(ttl))
  rcall('PEXPIRE', index, ttl)
end
return dropped
