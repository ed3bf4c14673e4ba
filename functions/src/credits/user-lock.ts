/**
 * Per-user serialisation of ledger transactions through Redis, as an accelerator.
 *
 * Firestore transactions on one user's document are correct under any
 * concurrency, but a burst of them contends on that document: each retries
 * with backoff and a burst of 50 takes tens of seconds. A short Redis lock per
 * user lets them run one after another instead. Correctness never depends on
 * it: when Redis is down, slow, or the wait runs out, the transaction runs
 * unlocked and Firestore's own concurrency control decides.
 *
 * Round trips: the lock costs two. A transaction waits for neither on its
 * own: the first try runs while the Firestore SDK waits its timer tick before
 * the transaction (lockedCreditTransaction); a spend's guarded first try has
 * no such tick and reads once the first try is answered. The release is sent,
 * not waited for. A caller folds them into its own Redis work (`LockSteps`):
 * a gate (the spend rate limit) rides on the first try as one script, and
 * commands that follow the work (the balance cache fill) go in one pipeline
 * with the release. The release also names this instance as the user's last
 * holder, which a spend's first try reads back (`Taken.mayRecall`).
 */
import { randomUUID } from "node:crypto";
import type { ChainableCommander } from "ioredis";
import type { Firestore, Transaction } from "firebase-admin/firestore";
import type { RedisGateway } from "../adapters/redis";
import { runCreditTransaction, userRef } from "./ledger";
import { forgetCommitted } from "./committed-state";
import { MISSED, guardedAttempt } from "./prefetched-transaction";
import type { LockGate } from "./rate-limit";

/**
 * Deletes the lock only if it is still ours (it may have expired and been taken), and names this instance as the
 * user's last holder: KEYS[1] lock, KEYS[2] last holder; ARGV[1] token, ARGV[2] instance, ARGV[3] marker ttl ms.
 */
const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
`;

/** This process, as the last holder of a user's lock names it. */
export const THIS_INSTANCE = randomUUID();

/** How long a user's last holder is kept after the release. */
const LAST_HOLDER_TTL_MS = 3_600_000;

/**
 * What taking the lock found: whether it is held, and whether what this instance remembers of the user may be
 * current (no other instance is known to have held the lock since this one did).
 */
export interface Taken {
  acquired: boolean;
  mayRecall: boolean;
}

export interface UserLockOptions {
  /** How long a holder may keep the lock before it expires on its own (a crashed holder). */
  ttlMs: number;
  /** How long to wait for the lock before running unlocked. */
  maxWaitMs: number;
}

export const DEFAULT_LOCK: UserLockOptions = { ttlMs: 5_000, maxWaitMs: 25_000 };

/** Commands queued on the pipeline that carries the lock's release (best effort, like the release). */
export type AfterWork = (pipeline: ChainableCommander) => void;

/** Redis work a caller folds into the lock's round trips. */
export interface LockSteps<T> {
  /** A check made with the first try of the lock, in one script; it refuses by throwing, before any work. */
  gate?: LockGate;
  /**
   * Commands to send with the release once `work` has succeeded, from its result (undefined: none); on the
   * lock's Redis, so without one they are not sent (they must be best effort, like the balance cache fill).
   */
  after?: (result: T) => AfterWork | undefined;
}

/** How a locked credit transaction runs, besides its Redis steps. */
export interface CreditTransactionSteps<T> extends LockSteps<T> {
  /**
   * Try the change once as a guarded batch first (prefetched-transaction.ts guardedAttempt: no transaction, so
   * no locks and no timer tick), covered by the user document, and run the transaction only if that misses.
   * Only for changes that create an idempotency record and read nothing but the record, the user document and
   * the user's lots and entries (the spend).
   */
  guarded?: boolean;
}

/** The user's ledger lock; `{uid}` is a Redis Cluster hash tag shared with its rate-limit window (rate-limit.ts). */
export function lockKeyOf(uid: string): string {
  return `lock:ledger:{${uid}}`;
}

/**
 * The instance that last released `uid`'s lock (set by the release, read by a spend's first try): a spend
 * reads what its instance remembers of the user (committed-state.ts) only if no other instance is known to have
 * held the lock since. A hint, like the lock: changes made without it do not set it, and the commit's guards
 * catch what it misses.
 */
export function lastHolderKeyOf(uid: string): string {
  return `lock:ledger:last:{${uid}}`;
}

/**
 * Runs `work` under `uid`'s lock. The lock is taken (with the gate's check) while `work` starts: `work` gets
 * `locked`, and must wait for it before it touches the store; a refusal by the gate rejects it, and `work`
 * fails with that refusal. Ledger transactions go through lockedCreditTransaction, which waits for it.
 */
export async function withUserLock<T>(
  gateway: RedisGateway | undefined,
  uid: string,
  work: (locked: Promise<Taken>) => Promise<T>,
  options: UserLockOptions = DEFAULT_LOCK,
  steps: LockSteps<T> = {},
): Promise<T> {
  const token = randomUUID();
  const taking = take(gateway, uid, token, options, steps.gate);
  // A refusal reaches the caller through `work`, which may wait a timer tick before it awaits `taking`: handled
  // now, so it is never an unhandled rejection in between (which would end a Cloud Functions instance).
  taking.catch(() => undefined);
  let result: T;
  try {
    result = await work(taking);
  } catch (error) {
    if ((await taking.catch(() => undefined))?.acquired && gateway) await release(gateway, uid, token);
    throw error;
  }
  const { acquired } = await taking;
  const after = steps.after?.(result);
  if (gateway && (acquired || after)) {
    // The release and what follows the work in one pipeline, sent but not waited for (RedisGateway.send): the
    // caller answers without a Redis round trip, and the commands are on the connection before the answer leaves.
    // Not sent or failed, it costs only the cache fill (the lock expires on its own), never the result.
    gateway.send((client) => {
      const pipeline = client.pipeline();
      if (acquired) pipeline.eval(...releaseOf(uid, token));
      after?.(pipeline);
      return pipeline.exec();
    });
  }
  return result;
}

/**
 * `body` as a credit transaction (ledger.ts runCreditTransaction) under `uid`'s lock. The Firestore SDK waits a
 * timer tick before a transaction's first attempt; the lock's first try (one Redis round trip, with the gate)
 * runs during it instead of before it. Nothing is read before the lock is held (or given up on), so a user's
 * transactions still do not contend, and a refused one has read and written nothing. With `guarded`, the
 * change is tried once without a transaction first, once the lock is held.
 */
export function lockedCreditTransaction<T>(
  db: Firestore,
  gateway: RedisGateway | undefined,
  uid: string,
  body: (tx: Transaction) => Promise<T>,
  options: UserLockOptions = DEFAULT_LOCK,
  steps: CreditTransactionSteps<T> = {},
): Promise<T> {
  const transaction = (locked: Promise<Taken>) =>
    runCreditTransaction(db, async (tx) => {
      await locked;
      // What this instance remembers of the user may be older than what this transaction writes.
      forgetCommitted(db, uid);
      return body(tx);
    });
  return withUserLock(
    gateway,
    uid,
    steps.guarded
      ? async (locked) => {
          const { mayRecall } = await locked;
          const answer = await guardedAttempt(db, userRef(db, uid), body, { recall: mayRecall });
          return answer === MISSED ? transaction(locked) : answer;
        }
      : transaction,
    options,
    steps,
  );
}

/**
 * Takes the lock, after the gate's check (riding on the first try when both use one Redis): whether it is held,
 * and whether another instance is known to have held it since this one (only a first try that took the lock
 * looks; one that had to wait for another holder assumes so).
 */
async function take(
  gateway: RedisGateway | undefined,
  uid: string,
  token: string,
  options: UserLockOptions,
  gate: LockGate | undefined,
): Promise<Taken> {
  const key = lockKeyOf(uid);
  if (gateway && gate?.gateway === gateway) {
    const first = await gate.checkAndLock(key, token, options.ttlMs, lastHolderKeyOf(uid));
    if (first.outcome === "locked")
      return { acquired: true, mayRecall: first.lastHolder === null || first.lastHolder === THIS_INSTANCE };
    if (first.outcome === "busy")
      return { acquired: await acquire(gateway, key, token, options, true), mayRecall: false };
    return { acquired: false, mayRecall: true };
  }
  // No lock to ride on (no Redis configured for it, or the gate's is another): the check on its own.
  if (gate) await gate.check();
  return { acquired: gateway ? await acquire(gateway, key, token, options) : false, mayRecall: true };
}

function releaseOf(uid: string, token: string): [string, number, string, string, string, string, number] {
  return [RELEASE_SCRIPT, 2, lockKeyOf(uid), lastHolderKeyOf(uid), token, THIS_INSTANCE, LAST_HOLDER_TTL_MS];
}

async function release(gateway: RedisGateway, uid: string, token: string): Promise<void> {
  await gateway.run((client) => client.eval(...releaseOf(uid, token))).catch(() => undefined);
}

async function acquire(
  gateway: RedisGateway,
  key: string,
  token: string,
  options: UserLockOptions,
  /** The first try was made already (it found the lock held): pause before the next. */
  triedOnce = false,
): Promise<boolean> {
  const deadline = Date.now() + options.maxWaitMs;
  let pause = 2;
  if (triedOnce) {
    await new Promise((resolve) => setTimeout(resolve, pause + Math.random() * pause));
    pause *= 2;
  }
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
