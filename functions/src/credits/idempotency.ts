/**
 * Idempotency keys with the semantics payment APIs use.
 *
 * A key belongs to one caller (user or admin) and one operation. The record
 * `idempotency_keys/{sha256(caller, key)}` holds a fingerprint of the request
 * and the response, written in the same transaction as the effect. A replay
 * with the same parameters returns the stored response; the same key with
 * other parameters is refused and writes nothing. Normally only successes are
 * stored: a request that failed wrote nothing, so it may be retried with its
 * key. Where an answer must be final (a queued op: invariant 11), the use case
 * also records a refusal (`rejection`), and every later delivery gets it back.
 *
 * `idempotentTransaction` is the one protocol every keyed change follows
 * (credit operations and createJob): user lock → transaction → record.
 */
import { createHash } from "node:crypto";
import type { DocumentReference, DocumentSnapshot, Firestore, Transaction } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import type { RedisGateway } from "../adapters/redis";
import { DomainError, type ErrorCode } from "../shared/errors";
import { HOUR_MS, systemClock, type Clock } from "../shared/time";
import { IdempotencyKeyReused } from "./errors";
import { accountFrom, userRef, type Account } from "./ledger";
import { DEFAULT_LOCK, lockedCreditTransaction, type AfterWork } from "./user-lock";
import type { LockGate } from "./rate-limit";

export const IDEMPOTENCY_KEYS = "idempotency_keys";
/** Kept well past the 24 h a client may retry in. */
export const IDEMPOTENCY_RETENTION_MS = 72 * HOUR_MS;

export interface IdempotencyScope {
  /** Whose key space: the calling user, or the admin/API client for admin and metering calls. */
  owner: string;
  operation: string;
  key: string;
  /** The request's parameters; anything that changes the effect must be here. */
  params: unknown;
  /**
   * A key space this operation's keys were recorded in before (admin keys were per admin, `admin:{adminUid}`,
   * until they moved to the target user). Read only: a record there with the same fingerprint is this request's
   * earlier answer and is replayed; one with another fingerprint was another request (the old space was shared
   * by every user the admin acted on) and is ignored. Records expire after IDEMPOTENCY_RETENTION_MS, so the
   * lookup finds nothing once that long has passed since the move.
   */
  formerOwner?: string;
}

export interface IdempotencyCheck<R> {
  ref: DocumentReference;
  fingerprint: string;
  /** The first response, when this is a replay. */
  replay?: R;
  /** The recorded refusal, when the first answer was one (see recordRejection). */
  rejection?: RecordedRejection;
}

/** A refusal stored as the key's final answer. */
export interface RecordedRejection {
  code: ErrorCode;
  message: string;
  details: Record<string, unknown> | null;
}

/** The error a recorded refusal is answered with again. */
export function rejectionError(rejection: RecordedRejection): DomainError {
  return new DomainError(rejection.code, rejection.message, rejection.details ?? undefined);
}

export function fingerprintOf(operation: string, params: unknown): string {
  return createHash("sha256")
    .update(`${operation}\n${canonicalJson(params)}`)
    .digest("hex");
}

export function idempotencyRef(db: Firestore, scope: Pick<IdempotencyScope, "owner" | "key">): DocumentReference {
  const id = createHash("sha256").update(`${scope.owner}\n${scope.key}`).digest("hex");
  return db.collection(IDEMPOTENCY_KEYS).doc(id);
}

/** The check for a record snapshot read by the caller (e.g. batched through tx.getAll). */
export function idempotencyFrom<R>(
  ref: DocumentReference,
  scope: IdempotencyScope,
  snapshot: DocumentSnapshot,
): IdempotencyCheck<R> {
  const fingerprint = fingerprintOf(scope.operation, scope.params);
  if (!snapshot.exists) return { ref, fingerprint };
  if (snapshot.get("fingerprint") !== fingerprint) throw new IdempotencyKeyReused();
  const rejection = snapshot.get("rejection") as RecordedRejection | undefined;
  if (rejection) return { ref, fingerprint, rejection };
  return { ref, fingerprint, replay: snapshot.get("response") as R };
}

/** Stores the response with the effect (same transaction). */
export function recordIdempotency<R>(
  tx: Transaction,
  check: IdempotencyCheck<R>,
  scope: IdempotencyScope,
  response: R,
  now: Date,
): void {
  writeRecord(tx, check, scope, { response }, now);
}

/** Stores a refusal as the key's final answer, in the transaction that decided it (nothing else is written). */
export function recordRejection<R>(
  tx: Transaction,
  check: IdempotencyCheck<R>,
  scope: IdempotencyScope,
  error: DomainError,
  now: Date,
): RecordedRejection {
  const rejection: RecordedRejection = { code: error.code, message: error.message, details: error.details ?? null };
  writeRecord(tx, check, scope, { rejection }, now);
  return rejection;
}

function writeRecord<R>(
  tx: Transaction,
  check: IdempotencyCheck<R>,
  scope: IdempotencyScope,
  answer: Record<string, unknown>,
  now: Date,
): void {
  const { FieldValue } = firestoreValues();
  tx.create(check.ref, {
    owner: scope.owner,
    operation: scope.operation,
    key: scope.key,
    fingerprint: check.fingerprint,
    ...answer,
    created_at: FieldValue.serverTimestamp(),
    expire_at: new Date(now.getTime() + IDEMPOTENCY_RETENTION_MS),
  });
}

export interface IdempotentDeps {
  db: Firestore;
  clock?: Clock;
  /** Redis for per-user serialisation of bursts; optional, never needed for correctness. */
  lock?: RedisGateway;
}

export interface IdempotentOptions<A extends object = object> {
  /**
   * Record a refusal (a DomainError thrown by the work) as the key's final
   * answer, in the same transaction, so a later delivery of the same request
   * is refused again even if it could now succeed. For answers that must never
   * change (queued ops, invariant 11); callers that may simply retry a refused
   * request leave it off.
   */
  finalRejections?: boolean;
  /**
   * Further documents to read in the same getAll as the record and the account (asked at each attempt);
   * their snapshots are given to the work in this order.
   */
  alsoRead?: () => DocumentReference[];
  /** A check made with the user lock's first try in one Redis round trip (the spend rate limit; user-lock.ts). */
  gate?: LockGate;
  /**
   * Best-effort Redis commands sent with the lock's release in one round trip, from the answer (e.g. the
   * balance cache fill); not for a recorded refusal.
   */
  after?: (answer: A & { replayed: boolean }) => AfterWork | undefined;
  /**
   * Try the change once without a transaction first (user-lock.ts CreditTransactionSteps.guarded): only for
   * work that reads nothing but the record, the account and the user's lots and entries.
   */
  guarded?: boolean;
}

/**
 * Runs `work` for `uid` exactly once per idempotency key: one user at a time
 * where Redis allows (see user-lock.ts), in one transaction that reads the
 * key's record and the account together. A replay returns the first response
 * (or throws the recorded refusal) and runs nothing; otherwise `work` does its
 * other reads, then its writes, and returns the response, which is recorded
 * with them. `work` must check everything before it writes, so a refusal has
 * written nothing.
 */
export async function idempotentTransaction<R extends object>(
  deps: IdempotentDeps,
  uid: string,
  scope: IdempotencyScope,
  work: (tx: Transaction, account: Account, also: DocumentSnapshot[]) => Promise<R> | R,
  options: IdempotentOptions<R> = {},
): Promise<R & { replayed: boolean }> {
  const clock = deps.clock ?? systemClock;
  const answer = await lockedCreditTransaction(
    deps.db,
    deps.lock,
    uid,
    async (tx): Promise<(R & { replayed: boolean }) | { rejection: RecordedRejection }> => {
      // The idempotency record, the account and what the work asked for in one round trip.
      const keyRef = idempotencyRef(deps.db, scope);
      const accountRef = userRef(deps.db, uid);
      const formerRef = scope.formerOwner
        ? idempotencyRef(deps.db, { owner: scope.formerOwner, key: scope.key })
        : null;
      const extra = options.alsoRead?.() ?? [];
      const snapshots = await tx.getAll(keyRef, accountRef, ...extra, ...(formerRef ? [formerRef] : []));
      const [keySnapshot, accountSnapshot] = snapshots;
      const also = snapshots.slice(2, 2 + extra.length);
      const formerSnapshot = formerRef ? snapshots[2 + extra.length] : undefined;
      const check = idempotencyFrom<R>(keyRef, scope, keySnapshot);
      if (check.rejection) return { rejection: check.rejection };
      if (check.replay) return { ...check.replay, replayed: true };
      const former = formerSnapshot ? formerAnswer<R>(formerSnapshot, check.fingerprint) : undefined;
      if (former) return { ...former, replayed: true };
      const account = await accountFrom(tx, deps.db, uid, accountRef, accountSnapshot);
      let response: R;
      try {
        response = await work(tx, account, also);
      } catch (error) {
        if (!options.finalRejections || !(error instanceof DomainError)) throw error;
        return { rejection: recordRejection(tx, check, scope, error, clock.now()) };
      }
      recordIdempotency(tx, check, scope, response, clock.now());
      return { ...response, replayed: false };
    },
    DEFAULT_LOCK,
    {
      gate: options.gate,
      guarded: options.guarded,
      after: options.after ? (answer) => ("rejection" in answer ? undefined : options.after?.(answer)) : undefined,
    },
  );
  if ("rejection" in answer) throw rejectionError(answer.rejection);
  return answer;
}

/** The response recorded in a former key space for this very request (same fingerprint), if any. */
function formerAnswer<R>(snapshot: DocumentSnapshot, fingerprint: string): R | undefined {
  if (!snapshot.exists || snapshot.get("fingerprint") !== fingerprint) return undefined;
  return snapshot.get("response") as R | undefined;
}

/** JSON with sorted object keys, so equal parameters give equal fingerprints. */
export function canonicalJson(value: unknown): string {
  if (value === undefined) return "null";
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, item]) => item !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(",")}}`;
}
