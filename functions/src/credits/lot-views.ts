/**
 * Lots as users see them (`listLots`, `getBalance.lots`) and the expiry of a
 * lot past its `expires_at` (ttlCleanup's `expired_lots` policy).
 */
import type { Firestore, Query } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { DomainError } from "../shared/errors";
import { systemClock, type Clock } from "../shared/time";
import { expireLot, readAccount, readLotsFor, runCreditTransaction, type Posted } from "./ledger";
import { LOTS, MAX_LOTS_PER_CHANGE, lotRef, type LotSource, type LotStatus } from "./lots";
import type { ListLotsInput } from "./schemas";

export const EXPIRY_ACTOR = "system:ttlCleanup";

export interface LotExpiry {
  /** False when the lot was not due (already expired, exhausted, or its expiry not reached). */
  expired: boolean;
  /** The `expire` entry; absent when everything left in the lot was held (it expires with its holds' release). */
  posted?: Posted;
}

/**
 * Expires one lot if it is active and past its expiry: its unheld credits
 * with one `expire` entry (reason `lot-expired`, `lot_id`), exactly once (the
 * status changes in the same transaction). Credits held for running jobs stay
 * until their holds are settled.
 */
export async function expireDueLot(db: Firestore, lotId: string, clock: Clock = systemClock): Promise<LotExpiry> {
  return runCreditTransaction(db, async (tx): Promise<LotExpiry> => {
    const snapshot = await tx.get(lotRef(db, lotId));
    const expiresAt = snapshot.get("expires_at") as { toMillis(): number } | null | undefined;
    const now = clock.now();
    if (!snapshot.exists || snapshot.get("status") !== "active" || !expiresAt || expiresAt.toMillis() > now.getTime())
      return { expired: false };
    const account = await readAccount(tx, db, String(snapshot.get("user_id")));
    await readLotsFor(tx, db, account, { amount: 0, heldDelta: 0, lots: { kind: "lapse", lotId } }, now);
    const posted = expireLot(tx, db, account, lotId, EXPIRY_ACTOR);
    return posted ? { expired: true, posted } : { expired: true };
  });
}

export interface LotView {
  lot_id: string;
  source: LotSource;
  amount: number;
  remaining: number;
  held: number;
  priority: number;
  expires_at: string | null;
  created_at: string | null;
  status: LotStatus;
}

/** The caller's lots, in burn order (active ones by default), with an opaque cursor. */
export async function listLots(
  db: Firestore,
  uid: string,
  input: ListLotsInput,
): Promise<{ items: LotView[]; next_cursor: string | null }> {
  const { FieldPath } = firestoreValues();
  let query: Query = db.collection(LOTS).where("user_id", "==", uid);
  if (input.status === "active") query = query.where("status", "==", "active");
  query = query.orderBy("burn_key").orderBy(FieldPath.documentId()).limit(input.limit);
  if (input.cursor) {
    const [burnKey, id] = decodeCursor(input.cursor);
    query = query.startAfter(burnKey, id);
  }
  const snapshot = await query.get();
  const items = snapshot.docs.map((doc): LotView => {
    const data = doc.data();
    return {
      lot_id: doc.id,
      source: data.source as LotSource,
      amount: Number(data.amount),
      remaining: Number(data.remaining),
      held: Number(data.held),
      priority: Number(data.priority),
      expires_at: isoOf(data.expires_at),
      created_at: isoOf(data.created_at),
      status: data.status as LotStatus,
    };
  });
  const last = snapshot.docs[snapshot.docs.length - 1];
  return {
    items,
    next_cursor: items.length === input.limit && last ? encodeCursor(String(last.get("burn_key")), last.id) : null,
  };
}

/** What getBalance says about lots: active ones, the next expiry, remaining credits by source. */
export interface LotSummary {
  count: number;
  /** The unheld credits of the active lots sharing the earliest expiry still ahead, and when (ms). */
  next_expiry: { amount: number; at: number } | null;
  by_source: Partial<Record<LotSource, number>>;
  /**
   * Present (true) only for a user with more than `LOT_SUMMARY_MAX` active lots: `count` comes from an aggregation,
   * `by_source` covers the lots read (never-expiring first, then by expiry) and `next_expiry` is exact unless
   * the bound cuts through the lots of the earliest expiry.
   */
  truncated?: true;
}

/**
 * The most lots a summary reads: the same bound as one change (`MAX_LOTS_PER_CHANGE`). Additions with equal
 * source, priority and expiry share a lot, so a user over it has credits of 200 different expiries.
 */
export const LOT_SUMMARY_MAX = MAX_LOTS_PER_CHANGE;

/**
 * Reads the user's active lots, at most `LOT_SUMMARY_MAX` (+1 to know whether there are more), ordered by
 * expiry (never-expiring first, as Firestore orders null), so the earliest expiries are always among them.
 * A lot whose `expires_at` is at or before `now` is left out: it can no longer pay, even before ttlCleanup
 * has expired it.
 */
export async function lotSummary(db: Firestore, uid: string, now: Date = new Date()): Promise<LotSummary> {
  const active = db.collection(LOTS).where("user_id", "==", uid).where("status", "==", "active");
  const snapshot = await active
    .orderBy("expires_at")
    .select("source", "remaining", "held", "expires_at")
    .limit(LOT_SUMMARY_MAX + 1)
    .get();
  const truncated = snapshot.size > LOT_SUMMARY_MAX;
  const docs = snapshot.docs.slice(0, LOT_SUMMARY_MAX);
  const summary: LotSummary = { count: 0, next_expiry: null, by_source: {} };
  let lapsed = 0;
  for (const doc of docs) {
    const expiresAt = doc.get("expires_at") as { toMillis(): number } | null;
    const at = expiresAt ? expiresAt.toMillis() : null;
    if (at !== null && at <= now.getTime()) {
      lapsed += 1;
      continue;
    }
    summary.count += 1;
    const source = doc.get("source") as LotSource;
    const remaining = Number(doc.get("remaining"));
    summary.by_source[source] = (summary.by_source[source] ?? 0) + remaining;
    if (at === null) continue;
    const unheld = remaining - Number(doc.get("held"));
    if (!summary.next_expiry || at < summary.next_expiry.at) summary.next_expiry = { amount: unheld, at };
    else if (at === summary.next_expiry.at) summary.next_expiry.amount += unheld;
  }
  if (truncated) {
    // Past the bound the count alone is exact (an aggregation, not a read of every lot).
    const all = (await active.count().get()).data().count;
    summary.count = all - lapsed;
    summary.truncated = true;
  }
  return summary;
}

/** Where a pass over expiring lots stopped: the last lot handled, in the order below. */
export interface ExpiringCursor {
  at: number;
  uid: string;
  id: string;
}

/** One active lot expiring soon, as the credits-expiring warning reads it. */
export interface ExpiringLot {
  uid: string;
  /** Its expiry (ms). */
  at: number;
  /** Its credits that would expire: remaining less what open holds reserve. */
  unheld: number;
  cursor: ExpiringCursor;
}

/**
 * A page of the active lots expiring in (fromMs, toMs], after `after`, ordered by expiry, then user, then id,
 * so the lots of one user and expiry come one after another whatever the user ids look like (index: status,
 * expires_at, user_id).
 */
export async function expiringLots(
  db: Firestore,
  fromMs: number,
  toMs: number,
  after: ExpiringCursor | null,
  limit: number,
): Promise<ExpiringLot[]> {
  const { FieldPath, Timestamp } = firestoreValues();
  let query = db
    .collection(LOTS)
    .where("status", "==", "active")
    .where("expires_at", ">", Timestamp.fromMillis(fromMs))
    .where("expires_at", "<=", Timestamp.fromMillis(toMs))
    .orderBy("expires_at")
    .orderBy("user_id")
    .orderBy(FieldPath.documentId())
    .select("user_id", "remaining", "held", "expires_at")
    .limit(limit);
  if (after) query = query.startAfter(Timestamp.fromMillis(after.at), after.uid, after.id);
  const snapshot = await query.get();
  return snapshot.docs.map((doc) => {
    const uid = String(doc.get("user_id"));
    const at = (doc.get("expires_at") as { toMillis(): number }).toMillis();
    return {
      uid,
      at,
      unheld: Number(doc.get("remaining")) - Number(doc.get("held")),
      cursor: { at, uid, id: doc.id },
    };
  });
}

/**
 * Whether a summary computed earlier (the cached one) still holds at `nowMs`: not once its next expiry has
 * passed, since those lots no longer pay (the ledger version, which the cache is keyed by, changes only when
 * ttlCleanup expires them).
 */
export function summaryCurrent(summary: LotSummary, nowMs: number): boolean {
  return summary.next_expiry === null || summary.next_expiry.at > nowMs;
}

function isoOf(value: unknown): string | null {
  return value && typeof value === "object" && "toDate" in value
    ? (value as { toDate(): Date }).toDate().toISOString()
    : null;
}

function encodeCursor(burnKey: string, id: string): string {
  return Buffer.from(JSON.stringify({ k: burnKey, id })).toString("base64url");
}

function decodeCursor(cursor: string): [string, string] {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as { k?: unknown; id?: unknown };
    if (typeof parsed.k === "string" && typeof parsed.id === "string") return [parsed.k, parsed.id];
  } catch {
    // fall through
  }
  throw new DomainError("invalid-argument", "Invalid cursor.", {
    issues: [{ path: "cursor", message: "not a cursor from listLots", code: "custom" }],
  });
}
