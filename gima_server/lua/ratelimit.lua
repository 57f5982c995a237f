-- GCRA rate limit, the same arithmetic as gcra.py, on the Redis server's clock.
-- KEYS[1]  bucket key (holds the theoretical arrival time, ms, with a TTL so idle buckets vanish)
-- KEYS[2]  this call's record (an id new to each call, the bucket's hash tag): a call that changed the bucket keeps
--          its answer here for ARGV[5] ms, so the same call run again (a client resending a command whose answer it
--          lost) answers the same and charges nothing more
-- ARGV[1]  emission interval in ms (period / rate)
-- ARGV[2]  burst (units the bucket holds)
-- ARGV[3]  cost (units this request takes; with mode "adjust", may be negative: a refund)
-- ARGV[4]  mode: "check" (may refuse) or "adjust" (never refuses)
-- ARGV[5]  how long a call's record is kept, ms
-- Returns  {allowed 0|1, remaining units, retry-after ms (string), reset ms (string)}
local answered = redis.call('GET', KEYS[2])
if answered then
  return cjson.decode(answered)
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  tat = math.max(tonumber(stored), now)
end

-- Only a call that changes the bucket is recorded: a refusal run again is simply decided again.
local function store(new_tat, answer)
  if new_tat > now then
    redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1)
  else
    redis.call('DEL', KEYS[1])
  end
  redis.call('SET', KEYS[2], cjson.encode(answer), 'PX', ARGV[5])
  return answer
end

if ARGV[4] == 'adjust' then
  local new_tat = math.max(now, tat + cost * interval)
  return store(new_tat, {1, 0, '0', tostring(new_tat - now)})
end

local new_tat = tat + cost * interval
local allow_at = new_tat - burst * interval
if allow_at - now > 0.001 then -- float sums drift by ulps: a microsecond of slack
  local remaining = math.max(0, math.floor((now - (tat - burst * interval)) / interval + 1e-9))
  return {0, remaining, tostring(allow_at - now), tostring(tat - now)}
end
return store(new_tat, {1, math.floor((now - allow_at) / interval + 1e-9), '0', tostring(new_tat - now)})
