/**
 * Cache-aside balances in Redis (`cache:balance:{uid}`, short TTL), versioned.
 *
 * Every write to the cache goes through one Lua script that stores a value
 * only if its version is at least the cached one, so a slow reader can never
 * put back an older balance after the mirror trigger stored a newer one
 * (the invalidation race). Readers may pass the newest version they have seen;
 * a cache entry older than that is ignored. Redis being down only means reads
 * go to Firestore.
 */
import type { ChainableCommander } from "ioredis";
import type { RedisGateway } from "../adapters/redis";
import type { Balance } from "../credits";

/** KEYS[1] key; ARGV[1] version, ARGV[2] json, ARGV[3] ttl ms → 1 stored, 0 kept the newer one. */
const SET_IF_NEWER = `
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and decoded.version and tonumber(decoded.version) > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`;

export const BALANCE_CACHE_TTL_MS = 30_000;

export function balanceKey(uid: string): string {
  return `cache:balance:${uid}`;
}

export class BalanceCache {
  constructor(
    private readonly redis: RedisGateway | undefined,
    private readonly ttlMs = BALANCE_CACHE_TTL_MS,
  ) {}

  /** The cached balance if present and not older than `minVersion`; undefined on a miss or when Redis is down. */
  async get(uid: string, minVersion = 0): Promise<Balance | undefined> {
    if (!this.redis) return undefined;
    try {
      const raw = await this.redis.run((client) => client.get(balanceKey(uid)));
      if (!raw) return undefined;
      const cached = JSON.parse(raw) as Balance;
      return cached.version >= minVersion ? cached : undefined;
    } catch {
      return undefined;
    }
  }

  /** Stores `value` unless a newer version is cached; best effort. Returns whether it was stored. */
  async put(uid: string, value: Balance): Promise<boolean> {
    if (!this.redis) return false;
    try {
      const stored = await this.redis.run((client) =>
        client.eval(SET_IF_NEWER, 1, balanceKey(uid), value.version, JSON.stringify(value), this.ttlMs),
      );
      return stored === 1;
    } catch {
      return false;
    }
  }

  /** `put` as a command queued on a pipeline the caller sends (e.g. with the ledger lock's release). */
  queuePut(pipeline: ChainableCommander, uid: string, value: Balance): void {
    pipeline.eval(SET_IF_NEWER, 1, balanceKey(uid), value.version, JSON.stringify(value), this.ttlMs);
  }

  async remove(uid: string): Promise<void> {
    if (!this.redis) return;
    await this.redis.run((client) => client.del(balanceKey(uid))).catch(() => undefined);
  }
}

/**
 * Cache-aside read: the cache when it is fresh enough, else `load` (and the
 * cache is filled). A reader that stores more than a balance with it (the
 * lots summary getBalance answers) passes `complete`: a cached entry without
 * it (written by a spend or the mirror) counts as a miss.
 */
export async function readThrough<T extends Balance = Balance>(
  cache: BalanceCache,
  uid: string,
  minVersion: number,
  load: () => Promise<T>,
  complete: (hit: Balance) => hit is T = (_hit): _hit is T => true,
): Promise<T & { cached: boolean }> {
  const hit = await cache.get(uid, minVersion);
  if (hit && complete(hit)) return { ...hit, cached: true };
  const fresh = await load();
  await cache.put(uid, fresh);
  return { ...fresh, cached: false };
}
