-- Read a reply's stream after an event id, or a snapshot of its text when the stream no longer holds that id.
-- KEYS[1] log stream, KEYS[2] info hash, KEYS[3] text
-- ARGV[1] the last event id the reader has, ARGV[2] the most entries to return
-- Returns {0} when nothing is known of the reply;
--   {1, user, ended, entries} when the entries follow the reader's id with nothing missing;
--   {2, user, ended, entries, upto, text, sections, status} when history was lost: the text covers ids up to
--   upto, and the entries follow upto.
local head = redis.call('HMGET', KEYS[2], 'user', 'ended', 'upto', 'sections', 'status')
if not head[1] then
  return {0}
end
local after = tonumber(ARGV[1])
local ended = head[2] or '0'
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local first_seq = nil
if #first > 0 then
  first_seq = tonumber(string.match(first[1][1], '%-(%d+)$'))
end
if first_seq ~= nil and first_seq <= after + 1 then
  return {1, head[1], ended, redis.call('XRANGE', KEYS[1], '(0-' .. after, '+', 'COUNT', ARGV[2])}
end
local upto = head[3] or '0'
if tonumber(upto) <= after then
  -- The reader has all the text; only what comes after its id is missing, and that is what is retained.
  return {1, head[1], ended, redis.call('XRANGE', KEYS[1], '(0-' .. after, '+', 'COUNT', ARGV[2])}
end
local entries = redis.call('XRANGE', KEYS[1], '(0-' .. upto, '+', 'COUNT', ARGV[2])
return {2, head[1], ended, entries, upto, redis.call('GET', KEYS[3]) or '', head[4] or '', head[5] or 'streaming'}
