//! The engine's server-side Lua scripts: each runs atomically in Redis, so what it does is all
//! or nothing and no other client sees it half done.
//!
//! Only the scripts' text (and the append script, prepared once); the calls that run them are in
//! `engine.rs` and `interface.rs`.

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
