--[[
  Remove bans whose time is up and publish an unban for each (kernel sets expire on their own;
  backends without timeouts and the agents' own bookkeeping rely on these decisions).
    Input:
      KEYS[1] bans hash  KEYS[2] ban expiry zset  KEYS[3] decisions stream
      ARGV[1] now ms  ARGV[2] most bans to expire in one call  ARGV[3] decisions maxlen  ARGV[4] protocol version
      ARGV[5] '1': publish the unbans (unsigned); '0': the caller signs and publishes them (this
        script cannot sign; an unban lost to a crash in between costs nothing, since every agent
        drops a ban at its expiry by itself)
    Output: flat list of jail|addr ids expired
]]
local rcall = redis.call
--- @include "includes/add-decision"

local due = rcall('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  rcall('HDEL', KEYS[1], id)
  rcall('ZREM', KEYS[2], id)
  if ARGV[5] == '1' then
    local sep = string.find(id, '|', 1, true)
    addDecision(KEYS[3], ARGV[3], ARGV[4], {'op', 'unban', 'jail', string.sub(id, 1, sep - 1), 'origin', 'expired',
      'addr', string.sub(id, sep + 1), 'at', ARGV[1]})
  end
end
return due
