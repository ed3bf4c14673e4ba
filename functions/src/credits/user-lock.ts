/**
 * Per-user serialisation of ledger transactions through Redis, as an accelerator.
 *
 * Firestore transactions on one user's document are correct under any
 * concurrency, but a burst of them contends on that document: each retries
 * with backoff and a burst of 50 takes tens of seconds. A short Redis lock per
 * user lets them run one after another instead. Correctness never depends on
 * it: when Redis is down, slow, or the wait runs out, the transaction runs
 * unlocked and Firestore's own concurrency control decides.
 */
import { randomUUID } from "node:crypto";
import type { RedisGateway } from "../adapters/redis";

/** Deletes the lock only if it is still ours (it may have expired and been taken). */
const RELEASE_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export interface UserLockOptions {
  /** How long a holder may keep the lock before it expires on its own (a crashed holder). */
  ttlMs: number;
  /** How long to wait for the lock before running unlocked. */
  maxWaitMs: number;
}

export const DEFAULT_LOCK: UserLockOptions = { ttlMs: 5_000, maxWaitMs: 25_000 };

export async function withUserLock<T>(
  gateway: RedisGateway | undefined,
  uid: string,
  work: () => Promise<T>,
  options: UserLockOptions = DEFAULT_LOCK,
): Promise<T> {
  const key = `lock:ledger:${uid}`;
  const token = randomUUID();
  const acquired = gateway ? await acquire(gateway, key, token, options) : false;
  try {
    return await work();
  } finally {
    if (acquired && gateway) {
      await gateway.run((client) => client.eval(RELEASE_SCRIPT, 1, key, token)).catch(() => undefined);
    }
  }
}

async function acquire(gateway: RedisGateway, key: string, token: string, options: UserLockOptions): Promise<boolean> {
  const deadline = Date.now() + options.maxWaitMs;
  let pause = 2;
  for (;;) {
    try {
      const answer = await gateway.run((client) => client.set(key, token, "PX", options.ttlMs, "NX"));
      if (answer === "OK") return true;
    } catch {
      return false; // Redis unavailable: run unlocked
    }
    if (Date.now() >= deadline) return false;
    // Jittered, growing pause between tries, capped so the lock is picked up soon after release.
    await new Promise((resolve) => setTimeout(resolve, pause + Math.random() * pause));
    pause = Math.min(pause * 2, 25);
  }
}
