-- Append a reply's new events to its stream, with the text they carry, and renew its owner lease.
-- KEYS[1] log stream, KEYS[2] info hash, KEYS[3] text, KEYS[4] owner
-- ARGV[1] owner token, ARGV[2] owner ttl ms, ARGV[3] stream maxlen (approximate), ARGV[4] mode:
--   's' = ARGV[5] is the whole text (first write, or a resend after an outage), 'a' = append ARGV[5]
-- ARGV[6] id of the newest event the text covers, ARGV[7] sections JSON ('' = unchanged),
-- ARGV[8] user id, ARGV[9] chat id, ARGV[10] status ('streaming' or how it ended),
-- ARGV[11] seconds to keep the keys (retention once ended, the running bound before), ARGV[12] 1 if ended,
-- ARGV[13] for an append, the id the caller's previous write reached ('upto' as it set it),
-- ARGV[14] the trace id of the request that started the reply (a resume elsewhere links its span to it),
-- then triples (event id, name, frame) from ARGV[15].
-- Returns 1; -1 when a reader already closed this reply as interrupted (its producer was thought dead);
-- 0 (nothing written) when an append finds the reply's keys gone, or behind what the caller wrote before
-- (Redis restarted, was emptied, or a replica that had not received the last writes was promoted: replication
-- is asynchronous), all without the caller seeing an error: the caller then sends the reply whole.
local info = KEYS[2]
if redis.call('HGET', info, 'closed') == '1' then
  return -1
end
-- An append whose text is already past what the caller wrote before has run already: the same command delivered
-- again (a client retrying a write whose answer it lost, as redis-py's cluster client does on a timeout). Its events
-- are skipped by id below; its text must not be appended a second time.
local delivered_before = false
if ARGV[4] == 'a' then
  if redis.call('HEXISTS', info, 'user') == 0 then
    return 0
  end
  local reached = tonumber(redis.call('HGET', info, 'upto') or '0')
  if reached < tonumber(ARGV[13]) then
    return 0
  end
  delivered_before = reached > tonumber(ARGV[13])
end
for i = 15, #ARGV, 3 do
  -- An id at or below the stream's top is already there (resent after an outage): pcall skips it.
  redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '0-' .. ARGV[i], 'n', ARGV[i + 1], 'f', ARGV[i + 2])
end
if ARGV[4] == 's' then
  redis.call('SET', KEYS[3], ARGV[5])
  redis.call('HSET', info, 'user', ARGV[8], 'chat', ARGV[9], 'trace', ARGV[14])
elseif #ARGV[5] > 0 and not delivered_before then
  redis.call('APPEND', KEYS[3], ARGV[5])
end
local upto = tonumber(redis.call('HGET', info, 'upto') or '0')
if tonumber(ARGV[6]) > upto then
  redis.call('HSET', info, 'upto', ARGV[6])
end
if ARGV[7] ~= '' then
  redis.call('HSET', info, 'sections', ARGV[7])
end
redis.call('HSET', info, 'status', ARGV[10])
if ARGV[12] == '1' then
  redis.call('HSET', info, 'ended', '1')
  redis.call('DEL', KEYS[4])
else
  redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2])
end
if ARGV[4] == 's' or ARGV[12] == '1' then
  for k = 1, 3 do
    redis.call('EXPIRE', KEYS[k], ARGV[11])
  end
end
return 1
