--[[
  Record a manual ban (or replace an existing ban's expiry) and publish it to every agent.
    Input:
      KEYS[1] bans hash  KEYS[2] ban expiry zset  KEYS[3] decisions stream  KEYS[4] stats hash
      KEYS[5] window key prefix (the ban's window is cleared)
      ARGV[1] jail  ARGV[2] addr  ARGV[3] now ms  ARGV[4] until ms (-1 permanent)
      ARGV[5] reason  ARGV[6] origin  ARGV[7] decisions maxlen  ARGV[8] protocol version
    Output: 1 new ban, 0 an existing ban was replaced
]]
local rcall = redis.call
--- @include "includes/add-decision"

local jail, addr, now, untilMs = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local banId = jail .. '|' .. addr
local existed = rcall('HEXISTS', KEYS[1], banId)
rcall('HSET', KEYS[1], banId, cjson.encode({
  jail = jail, addr = addr, since = now, ['until'] = untilMs, reason = ARGV[5], origin = ARGV[6], failures = 0
}))
if untilMs > 0 then rcall('ZADD', KEYS[2], untilMs, banId) else rcall('ZREM', KEYS[2], banId) end
rcall('DEL', KEYS[5] .. banId)
if existed == 0 then rcall('HINCRBY', KEYS[4], jail .. ':banned', 1) end
addDecision(KEYS[3], ARGV[7], ARGV[8], {'op', 'ban', 'jail', jail, 'origin', ARGV[6], 'addr', addr,
  'since', tostring(now), 'until', tostring(untilMs), 'reason', ARGV[5]})
return 1 - existed
