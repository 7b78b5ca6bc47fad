--[[
  Publish bans the counting script parked for their signature (includes/record-ban): store each
  one's signed record and append its signed decision, unless the ban changed meanwhile (lifted,
  renewed: that change has its own decision), and take it off the parking hash either way.
  "Unchanged" is the record, byte for byte, as the caller read it: a string comparison, not a
  JSON decode in Redis' single thread.
    Input:
      KEYS[1] bans hash  KEYS[2] decisions stream  KEYS[3] parking hash (ban id -> since)
      ARGV[1] decisions maxlen  ARGV[2] protocol version
      then per ban: ban id, the record as parked (JSON), the signed record (JSON), F, then F
      decision fields
    Output: per ban, the id of its decision, or '' when it was not published
]]
local rcall = redis.call
--- @include "includes/add-decision"

local out = {}
local i = 3
while i <= #ARGV do
  local banId, parked, record, f = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local fields = {}
  for k = 1, f do fields[k] = ARGV[i + 3 + k] end
  i = i + 4 + f
  local id = ''
  if parked ~= '' and rcall('HGET', KEYS[1], banId) == parked then
    rcall('HSET', KEYS[1], banId, record)
    id = addDecision(KEYS[2], ARGV[1], ARGV[2], fields)
  end
  rcall('HDEL', KEYS[3], banId)
  out[#out + 1] = id
end
return out
