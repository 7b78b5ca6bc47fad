-- Append a decision to the decisions stream, capped approximately at maxlen entries.
-- Every decision carries the protocol version so agents of another release skip it cleanly.
local function addDecision(streamKey, maxlen, version, fields)
  local args = {'XADD', streamKey, 'MAXLEN', '~', maxlen, '*', 'v', version}
  for i = 1, #fields do args[#args + 1] = fields[i] end
  return rcall(unpack(args))
end
