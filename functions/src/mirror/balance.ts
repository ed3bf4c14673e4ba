/**
 * The live balance mirror: Firestore `users/{uid}` → RTDB `user_balances/{uid}`.
 *
 * Triggers arrive at least once and in any order, so a write is applied only
 * if its `ledger_version` is newer than the mirror's (checked in an RTDB
 * transaction on the node): duplicates and stale deliveries are no-ops and the
 * mirror converges to the newest state. A deleted user removes the mirror; a
 * stale event arriving after that finds no node and no Firestore document,
 * and does not bring it back; a write racing the deletion is undone once it
 * sees the user gone.
 */
import type { Database } from "firebase-admin/database";
import type { Firestore } from "firebase-admin/firestore";
import { lotSummary, type Balance, type LotSummary } from "../credits";

export const USER_BALANCES = "user_balances";

/**
 * What `user_balances/{uid}` holds: the balance, the debt (`credits_debt`, 0
 * when none: read from the same user document and version as the balance, so
 * the version guard keeps them together), when the user document was written
 * (ms), and the next expiry of credits (`{amount, at}` with `at` in epoch ms,
 * or null; see getBalance's lots summary).
 */
export interface BalanceState extends Balance {
  debt?: number;
  updated_at: number;
  next_expiry?: LotSummary["next_expiry"];
}

/**
 * Adds the next expiry, read from the user's lots. Lots change only with a
 * ledger entry, so the version guard keeps it as current as the balance.
 */
export async function withNextExpiry(db: Firestore, uid: string, state: BalanceState): Promise<BalanceState> {
  return { ...state, next_expiry: (await lotSummary(db, uid)).next_expiry };
}

export type MirrorOutcome = "written" | "stale" | "removed" | "skipped";

/** The mirror's view of a user document's data (undefined when the document does not exist). */
export function balanceStateOf(
  data: Record<string, unknown> | undefined,
  updatedAtMs: number,
): BalanceState | undefined {
  if (!data) return undefined;
  const balance = Number(data.credits_balance ?? 0);
  const held = Number(data.credits_held ?? 0);
  return {
    balance,
    held,
    available: balance - held,
    version: Number(data.ledger_version ?? 0),
    debt: Number(data.credits_debt ?? 0),
    updated_at: updatedAtMs,
  };
}

export interface MirrorDeps {
  rtdb: Database;
  db: Firestore;
  /** Whether users/{uid} exists now; defaults to a Firestore read (a test interleaves a deletion through it). */
  userExists?: (uid: string) => Promise<boolean>;
}

/** Applies one user-document state to the mirror, guarded by version. */
export async function mirrorBalance(
  deps: MirrorDeps,
  uid: string,
  after: BalanceState | undefined,
): Promise<MirrorOutcome> {
  const ref = deps.rtdb.ref(`${USER_BALANCES}/${uid}`);
  const userExists = async () =>
    deps.userExists ? deps.userExists(uid) : (await deps.db.collection("users").doc(uid).get()).exists;
  if (!after) {
    // A late delete of a user created again since must not remove the live mirror.
    if (await userExists()) return "skipped";
    await ref.remove();
    return "removed";
  }
  const existing = (await ref.once("value")).val() as BalanceState | null;
  if (existing === null && !(await userExists())) {
    // No mirror and no user: a late delivery for a user deleted since (even of the creating event).
    return "skipped";
  }
  const result = await ref.transaction((current: BalanceState | null) => {
    if (current && typeof current.version === "number" && current.version >= after.version) return undefined; // abort: not newer
    return after;
  });
  if (!result.committed) return "stale";
  // The user may have been deleted, and its mirror removed, between the check above and this write (also
  // on the first build, when there was no mirror yet). A deletion either precedes this read, and the write
  // is undone here, or follows the write, and the deletion's own event removes the mirror.
  if (!(await userExists())) {
    await ref.remove();
    return "removed";
  }
  return "written";
}
