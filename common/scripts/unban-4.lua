--[[
  Lift bans and tell every agent. An address with no active ban produces no decision.
    Input:
      KEYS[1] bans hash  KEYS[2] ban expiry zset  KEYS[3] decisions stream  KEYS[4] window key prefix
      ARGV[1] origin  ARGV[2] decisions maxlen  ARGV[3] protocol version  ARGV[4] at (ms: the
      unban lifts bans that started no later than this; its signature covers it)
      then per target: jail, addr, key id, signature ('' unsigned)
      (jail '*' lifts the address in every jail, with one decision for all of them)
    Output: { id of the last decision or '', then jail, addr for each ban lifted }
]]
local rcall = redis.call
--- @include "includes/add-decision"
--- @include "includes/remove-ban"

local lifted = { '' }
local at = ARGV[4]

local function publish(jail, addr, kid, sig)
  local fields = {'op', 'unban', 'jail', jail, 'origin', ARGV[1], 'addr', addr, 'at', at}
  if kid ~= '' and sig ~= '' then
    fields[#fields + 1] = 'kid'
    fields[#fields + 1] = kid
    fields[#fields + 1] = 'sig'
    fields[#fields + 1] = sig
  end
  lifted[1] = addDecision(KEYS[3], ARGV[2], ARGV[3], fields)
end

local function lift(jail, addr)
  if removeBan(KEYS[1], KEYS[2], KEYS[4], jail .. '|' .. addr) == 1 then
    lifted[#lifted + 1] = jail
    lifted[#lifted + 1] = addr
    return true
  end
  return false
end

for i = 5, #ARGV, 4 do
  local jail, addr, kid, sig = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if jail == '*' then
    -- The bans hash is keyed jail|addr; finding every jail of one address needs a scan.
    local any = false
    local cursor = '0'
    repeat
      local page = rcall('HSCAN', KEYS[1], cursor, 'MATCH', '*|' .. addr, 'COUNT', 1000)
      cursor = page[1]
      for j = 1, #page[2], 2 do
        local id = page[2][j]
        local sep = string.find(id, '|', 1, true)
        if string.sub(id, sep + 1) == addr and lift(string.sub(id, 1, sep - 1), addr) then any = true end
      end
    until cursor == '0'
    if any then publish('*', addr, kid, sig) end
  elseif lift(jail, addr) then
    publish(jail, addr, kid, sig)
  end
end
return lifted
