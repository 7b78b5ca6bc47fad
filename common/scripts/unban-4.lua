--[[
  Lift bans and tell every agent. An address with no active ban produces no decision.
    Input:
      KEYS[1] bans hash  KEYS[2] ban expiry zset  KEYS[3] decisions stream  KEYS[4] window key prefix
      ARGV[1] origin  ARGV[2] decisions maxlen  ARGV[3] protocol version
      then pairs: jail, addr   (jail '*' lifts the address in every jail)
    Output: { id of the last decision or '', then jail, addr for each ban lifted }
]]
local rcall = redis.call
--- @include "includes/add-decision"
--- @include "includes/remove-ban"

local lifted = { '' }
local function lift(jail, addr)
  if removeBan(KEYS[1], KEYS[2], KEYS[4], jail .. '|' .. addr) == 1 then
    lifted[1] = addDecision(KEYS[3], ARGV[2], ARGV[3], {'op', 'unban', 'jail', jail, 'origin', ARGV[1], 'addr', addr})
    lifted[#lifted + 1] = jail
    lifted[#lifted + 1] = addr
  end
end

for i = 4, #ARGV, 2 do
  local jail, addr = ARGV[i], ARGV[i + 1]
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
  else
    lift(jail, addr)
  end
end
return lifted
