--[[
  Lift bans and tell every agent. The decision goes out even when Redis has no record of the ban:
  an agent keeps a ban it holds under a valid signature until a signed unban lifts it, whatever
  happened to the record (deleted by someone with write access, lost in a failover).
    Input:
      KEYS[1] bans hash  KEYS[2] ban expiry zset  KEYS[3] decisions stream
      ARGV[1] origin  ARGV[2] decisions maxlen  ARGV[3] protocol version  ARGV[4] at (ms: the
      unban lifts bans that started no later than this; its signature covers it)
      ARGV[5] window key prefix (jail appended)
      then per target: jail, addr, key id, signature ('' unsigned)
      (jail '*' lifts the address in every jail, with one decision for all of them)
    Output: { id of the last decision, then jail, addr for each ban lifted here }
]]
local rcall = redis.call
--- @include "includes/add-decision"
--- @include "includes/remove-ban"
--- @include "includes/signed-fields"

local lifted = { '' }
local at = ARGV[4]

local function publish(jail, addr, kid, sig)
  local fields = {'op', 'unban', 'jail', jail, 'origin', ARGV[1], 'addr', addr, 'at', at}
  addSignature(fields, kid, sig)
  lifted[1] = addDecision(KEYS[3], ARGV[2], ARGV[3], fields)
end

local function lift(jail, addr)
  if removeBan(KEYS[1], KEYS[2], ARGV[5], jail .. '|' .. addr) == 1 then
    lifted[#lifted + 1] = jail
    lifted[#lifted + 1] = addr
    return true
  end
  return false
end

for i = 6, #ARGV, 4 do
  local jail, addr, kid, sig = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if jail == '*' then
    -- The bans hash is keyed jail|addr; finding every jail of one address needs a scan.
    local cursor = '0'
    repeat
      local page = rcall('HSCAN', KEYS[1], cursor, 'MATCH', '*|' .. addr, 'COUNT', 1000)
      cursor = page[1]
      for j = 1, #page[2], 2 do
        local id = page[2][j]
        local sep = string.find(id, '|', 1, true)
        if string.sub(id, sep + 1) == addr then lift(string.sub(id, 1, sep - 1), addr) end
      end
    until cursor == '0'
    publish('*', addr, kid, sig)
  else
    lift(jail, addr)
    publish(jail, addr, kid, sig)
  end
end
return lifted
