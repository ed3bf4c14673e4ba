/**
 * Provisional release of an expired credit hold, used by the `expired_holds`
 * retention policy until the credits capability provides its own (same
 * signature: `ReleaseExpiredHold`).
 *
 * One Firestore transaction: the hold becomes `expired`, the user's
 * `credits_held` drops by the hold's amount, `ledger_version` grows by one, and
 * one `credit_transactions` entry of type `expire` records it. The hold's
 * status is read inside the transaction, so a hold is settled at most once.
 */
import type { Firestore } from "firebase-admin/firestore";
import type { Clock } from "../shared/time";
import type { ReleaseExpiredHold } from "./policies";

export const releaseExpiredHold: ReleaseExpiredHold = async (db: Firestore, holdId: string, clock: Clock) => {
  const holdRef = db.collection("credit_holds").doc(holdId);
  await db.runTransaction(async (tx) => {
    const hold = await tx.get(holdRef);
    if (!hold.exists || hold.get("status") !== "open") return;
    const now = clock.now();
    const expiresAt = hold.get("expires_at") as { toMillis(): number } | undefined;
    if (!expiresAt || expiresAt.toMillis() > now.getTime()) return;
    const userId = hold.get("user_id") as string;
    const amount = Number(hold.get("amount") ?? 0);
    const userRef = db.collection("users").doc(userId);
    const user = await tx.get(userRef);
    const balance = Number(user.get("credits_balance") ?? 0);
    const heldAfter = Math.max(0, Number(user.get("credits_held") ?? 0) - amount);
    const version = Number(user.get("ledger_version") ?? 0) + 1;
    tx.update(holdRef, { status: "expired", settled_at: now });
    tx.set(userRef, { credits_held: heldAfter, ledger_version: version }, { merge: true });
    tx.create(db.collection("credit_transactions").doc(), {
      user_id: userId,
      type: "expire",
      amount: 0,
      balance_after: balance,
      held_after: heldAfter,
      ledger_version: version,
      idempotency_key: `expire:${holdId}`,
      actor: "system:ttlCleanup",
      reason: "hold expired",
      hold_id: holdId,
      job_id: hold.get("job_id") ?? null,
      created_at: now,
    });
  });
};
