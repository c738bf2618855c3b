//! The engine's server-side Lua scripts: each runs atomically in Redis, so what it does is all
//! or nothing and no other client sees it half done.
//!
//! Only the scripts' text (and the append script, prepared once); the calls that run them are in
//! `engine.rs`, `interface.rs` and, for what the nodes of a cluster share (live messages,
//! heartbeats, connection slots, leases), `bus.rs`.

/// Takes the channel's next seq and appends the message under it, atomically; with an
/// idempotency key, a key seen before answers its seq and writes nothing. With ARGV[5] set
/// (no replica to wait for) the message is also published to the nodes watching the channel.
const APPEND: &str = r#"
if ARGV[4] ~= '' then
  local seen = redis.call('HGET', KEYS[4], ARGV[4])
  if seen then return {0, tonumber(seen)} end
end
local seq = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('XADD', KEYS[2], string.format('%d-1', seq), 'm', ARGV[2])
if ARGV[3] == '1' then redis.call('ZADD', KEYS[3], seq, seq) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[4], ARGV[4], seq) end
if ARGV[5] == '1' then redis.call('PUBLISH', KEYS[5], 'L' .. seq .. ':' .. ARGV[2]) end
return {1, seq}
"#;

pub(super) static APPEND_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(APPEND));

/// Takes a due timer for this node: it moves from `timers` to `claimed`, scored by when the
/// claim lapses. 0 when another node took it first.
pub(super) const CLAIM: &str = r#"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2]), ARGV[1])
return 1
"#;

/// Claims that lapsed (their node died before firing) are due again at their due time.
pub(super) const RECLAIM: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, m in ipairs(lapsed) do
  redis.call('ZREM', KEYS[2], m)
  redis.call('ZADD', KEYS[1], tonumber(string.sub(m, 1, 20)), m)
end
return #lapsed
"#;

/// A cursor only moves forward.
pub(super) const ADVANCE: &str = r#"
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"#;

/// A user keeps the org it was first seen with.
pub(super) const REMEMBER: &str = r#"
local known = redis.call('HGET', KEYS[1], ARGV[1])
if known and known ~= ARGV[2] then return known end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return ''
"#;

// What the nodes of a cluster share, run by `bus.rs`.

/// Numbers a live-only message and publishes it; a keyframe is also kept for late viewers.
pub(super) const BROADCAST: &str = r#"
local seq = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local frame = ARGV[3] .. seq .. ':' .. ARGV[2]
redis.call('PUBLISH', KEYS[2], frame)
if tonumber(ARGV[4]) > 0 then redis.call('SET', KEYS[3], frame, 'PX', ARGV[4]) end
return seq
"#;

/// The node says it is alive until now + ARGV[2] ms; 1 when the cluster had forgotten it.
pub(super) const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
"#;

/// Takes a slot of user ARGV[3] for node ARGV[2] if the live nodes hold fewer than ARGV[4];
/// forgets dead nodes on the way. Returns the user's count before, or -1 when full.
pub(super) const TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('DEL', ARGV[1] .. n)
  redis.call('ZREM', KEYS[1], n)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), ARGV[2])
local total = 0
for _, n in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  total = total + tonumber(redis.call('HGET', ARGV[1] .. n, ARGV[3]) or '0')
end
if total >= tonumber(ARGV[4]) then return -1 end
redis.call('HINCRBY', ARGV[1] .. ARGV[2], ARGV[3], 1)
return total
"#;

/// Gives a slot back; returns the user's count left on the live nodes.
pub(super) const GIVE: &str = r#"
local mine = ARGV[1] .. ARGV[2]
if redis.call('HINCRBY', mine, ARGV[3], -1) <= 0 then redis.call('HDEL', mine, ARGV[3]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = 0
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  total = total + tonumber(redis.call('HGET', ARGV[1] .. n, ARGV[3]) or '0')
end
return total
"#;

/// Takes a lease that is free or already this node's, for ARGV[2] ms: 1 when held.
pub(super) const LEASE: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// Applies a write only while a record holds what the caller read: KEYS[1] the record's hash,
/// ARGV[1] its field, ARGV[2] `1` when a value is expected (ARGV[3]) or `0` for none; then
/// the changes, each `hset key field value`, `hdel key field`, `zadd key member score` or
/// `zrem key member`. 0 when the record changed (nothing written), 1 when written.
pub(super) const WRITE_IF: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if current ~= ARGV[3] then return 0 end
elseif current then
  return 0
end
local i = 4
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'hset' then
    redis.call('HSET', ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]); i = i + 4
  elseif op == 'hdel' then
    redis.call('HDEL', ARGV[i + 1], ARGV[i + 2]); i = i + 3
  elseif op == 'zadd' then
    redis.call('ZADD', ARGV[i + 1], ARGV[i + 3], ARGV[i + 2]); i = i + 4
  elseif op == 'zrem' then
    redis.call('ZREM', ARGV[i + 1], ARGV[i + 2]); i = i + 3
  else
    return redis.error_reply('write_if: unknown change ' .. op)
  end
end
return 1
"#;
