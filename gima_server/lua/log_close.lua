-- End a reply whose producer is gone: append its last event (error interrupted) so every reader sees the end.
-- KEYS[1] log stream, KEYS[2] info hash, KEYS[3] text, KEYS[4] owner
-- ARGV[1] the error event's JSON data, ARGV[2] seconds to keep the keys, ARGV[3] stream maxlen,
-- ARGV[4] the closing event's id (above any id a reply can use, so it follows whatever a client saw)
-- Returns {-1} when nothing is known of the reply, {0} when its owner is alive or it already ended,
--   else {1, id of the closing event, text}: the caller stores the partial text.
local head = redis.call('HMGET', KEYS[2], 'user', 'ended', 'closed')
if not head[1] then
  return {-1}
end
if redis.call('EXISTS', KEYS[4]) == 1 or head[2] == '1' or head[3] == '1' then
  return {0}
end
local id = ARGV[4]
local frame = 'id: ' .. id .. '\nevent: error\ndata: ' .. ARGV[1] .. '\n\n'
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '0-' .. id, 'n', 'error', 'f', frame)
redis.call('HSET', KEYS[2], 'closed', '1', 'ended', '1', 'status', 'error')
for k = 1, 3 do
  redis.call('EXPIRE', KEYS[k], ARGV[2])
end
return {1, id, redis.call('GET', KEYS[3]) or ''}
