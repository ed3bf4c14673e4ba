/**
 * `mirrorUserBalance`: every write to users/{uid} updates the RTDB mirror
 * (version-guarded, with the next expiry of credits), the balance cache
 * (versioned), the low-balance alarm (judged on the event's before/after
 * pair) and the warning of credits about to expire.
 */
import { onDocumentWritten } from "firebase-functions/v2/firestore";
import { firestore, realtimeDb } from "../adapters/firebase";
import { mongoConfigured, mongoDb } from "../adapters/mongo";
import { redis } from "../adapters/redis";
import { LOW_BALANCE_THRESHOLD } from "../config";
import { notify } from "../notifications/notifications";
import { logs } from "../shared/logs";
import { balanceStateOf, mirrorBalance, withNextExpiry } from "./balance";
import { BalanceCache } from "./cache";
import { observeBalance, observeExpiring, policyFor } from "./low-balance";

export const mirrorUserBalance = onDocumentWritten(
  { document: "users/{uid}", retry: true, timeoutSeconds: 60 },
  async (event) => {
    const uid = event.params.uid;
    const after = event.data?.after;
    const updatedAt = after?.exists && after.updateTime ? after.updateTime.toMillis() : Date.parse(event.time);
    const read = balanceStateOf(after?.exists ? after.data() : undefined, updatedAt);
    const state = read && (await withNextExpiry(firestore(), uid, read));
    const outcome = await mirrorBalance({ rtdb: realtimeDb(), db: firestore() }, uid, state);
    const cache = new BalanceCache(redis());
    // Only a state that was actually mirrored (newest) refreshes the cache; a stale redelivery must not.
    if (state && outcome === "written")
      await cache.put(uid, {
        balance: state.balance,
        held: state.held,
        available: state.available,
        version: state.version,
      });
    else if (outcome === "removed") await cache.remove(uid);
    // Without MongoDB there is nowhere to notify (logged once by mongoConfigured).
    if (state && state.version > 0 && mongoConfigured()) {
      // The alarm judges this event's own change (before → after), whatever order events arrive in.
      const before = event.data?.before;
      const previous = balanceStateOf(before?.exists ? before.data() : undefined, 0);
      const mongo = await mongoDb();
      await observeBalance(
        { db: firestore(), notify: (input) => notify({ mongo, redis: redis() }, input) },
        uid,
        previous && { available: previous.available, version: previous.version },
        { available: state.available, version: state.version },
        policyFor(LOW_BALANCE_THRESHOLD.value()),
      );
      await observeExpiring(
        { notify: (input) => notify({ mongo, redis: redis() }, input) },
        uid,
        state.next_expiry ?? null,
        new Date(),
        LOW_BALANCE_THRESHOLD.value(),
      );
    }
    logs.balanceMirrored(uid, event.id, outcome, state?.version ?? null);
  },
);
