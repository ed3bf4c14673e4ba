/**
 * Per-user rate limits on spending.
 *
 * In Redis: a fixed-window counter updated by one Lua script (atomic across
 * instances). Without Redis (down, slow, circuit open): a per-instance
 * fallback window with its own limit, so an outage never means unlimited
 * spending and never makes a caller wait. Instances do not share it, so the
 * real bound during an outage is (instances serving the user) × that limit,
 * at most maxInstances × RATE_LIMIT_SPEND_FALLBACK_PER_INSTANCE.
 *
 * A spend also takes the user's ledger lock (user-lock.ts): `gate` makes the
 * limit check and the lock's first try one script, so a spend pays one Redis
 * round trip for both, not two. The lock stays an accelerator: when Redis is
 * down the fallback window decides and the spend runs unlocked.
 */
import { redis as redisGateway, type RedisGateway } from "../adapters/redis";
import { RATE_LIMIT_SPEND_FALLBACK_PER_INSTANCE, RATE_LIMIT_SPEND_PER_MINUTE } from "../config";
import { RateLimited } from "./errors";

/** KEYS[1] counter; ARGV[1] window ms, ARGV[2] limit → {allowed 0/1, count, ms until reset}. */
const WINDOW_SCRIPT = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
if count > tonumber(ARGV[2]) then return {0, count, ttl} end
return {1, count, ttl}
`;

/**
 * The window above, then (only when allowed) the ledger lock's first try: KEYS[1] counter, KEYS[2] lock, KEYS[3]
 * the lock's last holder; ARGV[1] window ms, ARGV[2] limit, ARGV[3] lock token, ARGV[4] lock ttl ms →
 * {allowed 0/1, ms until reset, locked 0/1, last holder or ""}. A refused call takes no lock.
 */
const WINDOW_AND_LOCK_SCRIPT = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
if count > tonumber(ARGV[2]) then return {0, ttl, 0, ''} end
if redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4], 'NX') then
  return {1, ttl, 1, redis.call('GET', KEYS[3]) or ''}
end
return {1, ttl, 0, ''}
`;

/**
 * What the lock's first try found: taken, held by another, or Redis not answering (run unlocked); when taken, the
 * instance that released it last (user-lock.ts lastHolderKeyOf; null: none on record).
 */
export interface FirstTry {
  outcome: "locked" | "busy" | "unavailable";
  lastHolder: string | null;
}

/**
 * A check that rides on the ledger lock's first try (user-lock.ts withUserLock): `checkAndLock` checks and
 * tries the lock in one round trip on `gateway`; `check` is the check alone (no lock to take there).
 * Both throw to refuse (RateLimited), having taken no lock.
 */
export interface LockGate {
  gateway: RedisGateway;
  check(): Promise<void>;
  checkAndLock(lockKey: string, token: string, ttlMs: number, lastHolderKey: string): Promise<FirstTry>;
}

export interface RateLimitDecision {
  allowed: boolean;
  retryAfterMs: number;
  source: "redis" | "fallback";
}

export interface RateLimiterOptions {
  limit: number;
  windowMs: number;
  /** What one instance allows per window without Redis (instances do not share it). */
  fallbackLimit: number;
  now?: () => number;
}

/**
 * The Redis key of `subject`'s window in `bucket`. The braces are a Redis Cluster hash tag: the window and the
 * subject's ledger lock (user-lock.ts `lockKeyOf`, tagged the same way) live in one slot, as the script that
 * checks the one and takes the other in one call requires (a cluster refuses a script over two slots).
 */
export function rateKeyOf(bucket: string, subject: string): string {
  return `rl:${bucket}:{${subject}}`;
}

export class RateLimiter {
  private readonly local = new Map<string, { windowStart: number; count: number }>();

  constructor(
    private readonly gateway: RedisGateway,
    private readonly options: RateLimiterOptions,
  ) {}

  async check(bucket: string, subject: string): Promise<RateLimitDecision> {
    try {
      const [allowed, , ttl] = await this.gateway.run(
        (client) =>
          client.eval(
            WINDOW_SCRIPT,
            1,
            rateKeyOf(bucket, subject),
            this.options.windowMs,
            this.options.limit,
          ) as Promise<[number, number, number]>,
      );
      return { allowed: allowed === 1, retryAfterMs: allowed === 1 ? 0 : Number(ttl), source: "redis" };
    } catch {
      return this.checkLocally(`${bucket}:${subject}`);
    }
  }

  /** Throws RateLimited when over the limit. */
  async enforce(bucket: string, subject: string): Promise<void> {
    const decision = await this.check(bucket, subject);
    if (!decision.allowed) throw new RateLimited(decision.retryAfterMs);
  }

  /** The limit for `subject` as a gate on its ledger lock (one Redis round trip for both). */
  gate(bucket: string, subject: string): LockGate {
    return {
      gateway: this.gateway,
      check: () => this.enforce(bucket, subject),
      checkAndLock: async (lockKey, token, ttlMs, lastHolderKey) => {
        let answer: [number, number, number, string];
        try {
          answer = await this.gateway.run(
            (client) =>
              client.eval(
                WINDOW_AND_LOCK_SCRIPT,
                3,
                rateKeyOf(bucket, subject),
                lockKey,
                lastHolderKey,
                this.options.windowMs,
                this.options.limit,
                token,
                ttlMs,
              ) as Promise<[number, number, number, string]>,
          );
        } catch {
          const decision = this.checkLocally(`${bucket}:${subject}`);
          if (!decision.allowed) throw new RateLimited(decision.retryAfterMs);
          return { outcome: "unavailable", lastHolder: null };
        }
        const [allowed, ttl, locked, lastHolder] = answer;
        if (allowed !== 1) throw new RateLimited(Number(ttl));
        return { outcome: locked === 1 ? "locked" : "busy", lastHolder: lastHolder || null };
      },
    };
  }

  private checkLocally(key: string): RateLimitDecision {
    const now = (this.options.now ?? Date.now)();
    const windowStart = now - (now % this.options.windowMs);
    const entry = this.local.get(key);
    const current = entry && entry.windowStart === windowStart ? entry : { windowStart, count: 0 };
    current.count += 1;
    this.local.set(key, current);
    if (this.local.size > 10_000) this.prune(windowStart);
    const allowed = current.count <= this.options.fallbackLimit;
    return { allowed, retryAfterMs: allowed ? 0 : windowStart + this.options.windowMs - now, source: "fallback" };
  }

  private prune(windowStart: number): void {
    for (const [key, entry] of this.local) if (entry.windowStart !== windowStart) this.local.delete(key);
  }
}

let limiter: RateLimiter | undefined;

/** The instance's spend limiter, configured from params on first use. */
export function spendLimiter(): RateLimiter {
  limiter ??= new RateLimiter(redisGateway(), {
    limit: RATE_LIMIT_SPEND_PER_MINUTE.value(),
    windowMs: 60_000,
    fallbackLimit: RATE_LIMIT_SPEND_FALLBACK_PER_INSTANCE.value(),
  });
  return limiter;
}
