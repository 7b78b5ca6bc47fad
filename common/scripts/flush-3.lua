--[[
  Lift every ban, or every ban of one jail, with a single flush decision for the agents.
    Input:
      KEYS[1] bans hash  KEYS[2] ban expiry zset  KEYS[3] decisions stream
      ARGV[1] jail or '*'  ARGV[2] origin  ARGV[3] decisions maxlen  ARGV[4] protocol version
      ARGV[5] at (ms: agents lift the bans that started no later than this)
      ARGV[6] key id and ARGV[7] signature of the flush ('' unsigned)
      ARGV[8] window key prefix (jail appended)
    Output: { number of bans lifted, id of the flush decision }
]]
local rcall = redis.call
--- @include "includes/add-decision"
--- @include "includes/remove-ban"
--- @include "includes/signed-fields"

local jail = ARGV[1]
local ids = {}
local cursor = '0'
repeat
  local page = rcall('HSCAN', KEYS[1], cursor, 'COUNT', 1000)
  cursor = page[1]
  for j = 1, #page[2], 2 do
    local id = page[2][j]
    if jail == '*' or string.sub(id, 1, #jail + 1) == jail .. '|' then ids[#ids + 1] = id end
  end
until cursor == '0'
for _, id in ipairs(ids) do removeBan(KEYS[1], KEYS[2], ARGV[8], id) end
local fields = {'op', 'flush', 'jail', jail, 'origin', ARGV[2], 'at', ARGV[5]}
addSignature(fields, ARGV[6], ARGV[7])
local id = addDecision(KEYS[3], ARGV[3], ARGV[4], fields)
return { #ids, id }
