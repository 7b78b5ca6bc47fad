-- Forget an active ban and the failures that led to it, so a later offence starts a fresh window.
local function removeBan(bansKey, expiryKey, windowPrefix, banId)
  local existed = rcall('HDEL', bansKey, banId)
  rcall('ZREM', expiryKey, banId)
  local sep = string.find(banId, '|', 1, true)
  if sep then rcall('HDEL', windowPrefix .. string.sub(banId, 1, sep - 1), string.sub(banId, sep + 1)) end
  return existed
end
