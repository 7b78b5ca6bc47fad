--[[
  Publish bans the counting script parked for their signature (includes/record-ban): store each
  one's signed record and append its signed decision, unless the ban changed meanwhile (lifted,
  renewed: that change has its own decision), and delete the parking fields they were under.
  "Unchanged" is the record, byte for byte, as the caller read it: a string comparison, not a
  JSON decode in Redis' single thread.
    Input:
      KEYS[1] bans hash  KEYS[2] decisions stream  KEYS[3] parking hash (`<time>:<call>` -> ban ids)
      ARGV[1] decisions maxlen  ARGV[2] protocol version
      ARGV[3] D, then D fields of the parking hash these bans were parked under (deleted)
      then per ban: ban id, the record as parked (JSON), the signed record (JSON), F, then F
      decision fields
    Output: per ban, the id of its decision, or '' when it was not published
]]
local rcall = redis.call
--- @include "includes/add-decision"

local out = {}
local parkedUnder = tonumber(ARGV[3])
local i = 4 + parkedUnder
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
  out[#out + 1] = id
end
if parkedUnder > 0 then rcall('HDEL', KEYS[3], unpack(ARGV, 4, 3 + parkedUnder)) end
return out
