--[[
  Count a batch of failures cluster-wide in a sliding window per (jail, address), ban at maxretry,
  and acknowledge the stream entries, all atomically: an entry is counted once even when it is
  delivered again (its stream id is the window member, and ZADD of a present member adds nothing).

    Input:
      KEYS[1] failures stream   KEYS[2] bans hash       KEYS[3] ban expiry zset
      KEYS[4] decisions stream  KEYS[5] stats hash      KEYS[6] failing-addresses prefix (jail appended)
      ARGV[1] consumer group    ARGV[2] now ms          ARGV[3] window key prefix
      ARGV[4] decisions maxlen  ARGV[5] protocol version
      ARGV[6] number of failures N
      then N times 8 values: stream id, jail, addr, time ms, host, findtime ms, maxretry, bantime ms (-1 permanent)
      then the stream ids to acknowledge without counting (malformed, ignored entries)
    Output:
      array of results, one per failure: count in window after it, or
        -1 already banned, -2 outside the window (too old), -3 duplicate delivery
      followed by the bans made as triples: jail, addr, until
    A window holds failures with time > now - findtime; a failure from the future counts at now.
]]
local rcall = redis.call
--- @include "includes/add-decision"

local group = ARGV[1]
local now = tonumber(ARGV[2])
local windowPrefix = ARGV[3]
local maxlen = ARGV[4]
local version = ARGV[5]
local n = tonumber(ARGV[6])
local results = {}
local bans = {}
local acks = {}
local base = 7

for i = 0, n - 1 do
  local o = base + i * 8
  local id, jail, addr = ARGV[o], ARGV[o + 1], ARGV[o + 2]
  local t = tonumber(ARGV[o + 3])
  local host = ARGV[o + 4]
  local findtime, maxretry, bantime = tonumber(ARGV[o + 5]), tonumber(ARGV[o + 6]), tonumber(ARGV[o + 7])
  acks[#acks + 1] = id
  if t > now then t = now end
  local banId = jail .. '|' .. addr
  local result
  if t <= now - findtime then
    result = -2
  elseif rcall('HEXISTS', KEYS[2], banId) == 1 then
    result = -1
  else
    local window = windowPrefix .. banId
    local added = rcall('ZADD', window, t, id .. '|' .. host)
    rcall('ZREMRANGEBYSCORE', window, '-inf', now - findtime)
    local count = rcall('ZCARD', window)
    if added == 0 then
      result = -3
    else
      result = count
      rcall('HINCRBY', KEYS[5], jail .. ':failed', 1)
      local failing = KEYS[6] .. jail
      rcall('ZADD', failing, t, addr)
      rcall('ZREMRANGEBYSCORE', failing, '-inf', now - findtime)
      rcall('PEXPIRE', failing, findtime)
    end
    if count >= maxretry then
      local untilMs = -1
      if bantime >= 0 then untilMs = now + bantime end
      local reason = count .. ' failures in ' .. math.floor(findtime / 1000) .. 's'
      rcall('HSET', KEYS[2], banId, cjson.encode({
        jail = jail, addr = addr, since = now, ['until'] = untilMs, reason = reason, origin = host, failures = count
      }))
      if untilMs > 0 then rcall('ZADD', KEYS[3], untilMs, banId) end
      rcall('DEL', window)
      rcall('ZREM', KEYS[6] .. jail, addr)
      rcall('HINCRBY', KEYS[5], jail .. ':banned', 1)
      addDecision(KEYS[4], maxlen, version, {'op', 'ban', 'jail', jail, 'origin', host, 'addr', addr,
        'since', tostring(now), 'until', tostring(untilMs), 'reason', reason})
      bans[#bans + 1] = jail
      bans[#bans + 1] = addr
      bans[#bans + 1] = untilMs
    else
      rcall('PEXPIRE', window, findtime)
    end
  end
  results[#results + 1] = result
end

for i = base + n * 8, #ARGV do acks[#acks + 1] = ARGV[i] end
if #acks > 0 then rcall('XACK', KEYS[1], group, unpack(acks)) end

for i = 1, #bans do results[#results + 1] = bans[i] end
return results
