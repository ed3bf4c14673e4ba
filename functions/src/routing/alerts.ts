/**
 * Alerts of the model router: acknowledging them (admin callable) and telling
 * administrators about new ones through a MongoDB notification.
 */
import type { Firestore } from "firebase-admin/firestore";
import type { Db, ObjectId } from "mongodb";
import { firestoreValues } from "../adapters/firebase";
import { NotFound } from "../shared/errors";
import type { Clock } from "../shared/time";
import type { Alert } from "./provider-health";
import { ALERTS } from "./provider-health";
import type { AcknowledgeAlertInput } from "./schemas";

/** The notification audience for operator alerts. */
export const ADMINS_USER_ID = "admins";
const NOTIFICATION_RETENTION_MS = 30 * 86_400_000;

export interface AcknowledgeResult {
  alert_id: string;
  acknowledged: true;
  /** False when the alert had already been acknowledged (the first acknowledgement stands). */
  changed: boolean;
}

/** Marks an alert acknowledged, once; retention may delete it after 90 days once it is also resolved. */
export async function acknowledgeAlert(
  deps: { db: Firestore; clock: Clock },
  input: AcknowledgeAlertInput,
  adminUid: string,
): Promise<AcknowledgeResult> {
  const ref = deps.db.collection(ALERTS).doc(input.alert_id);
  return deps.db.runTransaction(async (tx) => {
    const alert = await tx.get(ref);
    if (!alert.exists) throw new NotFound(`Alert ${input.alert_id}`);
    if (alert.get("acknowledged") === true) return { alert_id: ref.id, acknowledged: true, changed: false };
    tx.update(ref, {
      acknowledged: true,
      acknowledged_at: deps.clock.now(),
      acknowledged_by: adminUid,
      // The audit trail's actor of this write (see audit/record.ts actorOf).
      updated_by: adminUid,
      updated_at: firestoreValues().FieldValue.serverTimestamp(),
    });
    return { alert_id: ref.id, acknowledged: true, changed: true };
  });
}

/**
 * The notification's `_id` for a key such as `alert:{alertId}`: an ObjectId
 * made from the key's hash, so it is deterministic and still an ObjectId (the
 * local MongoDB wire server accepts no other `_id` type).
 */
export function notificationId(key: string): ObjectId {
  const { ObjectId: Id } = require("mongodb") as typeof import("mongodb");
  const { createHash } = require("node:crypto") as typeof import("node:crypto");
  return new Id(createHash("sha256").update(key).digest("hex").slice(0, 24));
}

/**
 * Writes the admins' notification for an alert. The id is derived from the
 * alert, and it is only inserted when absent, so a repeat changes nothing.
 */
export async function notifyAdminsOfAlert(mongo: Db, alert: Alert): Promise<void> {
  const key = `alert:${alert.id}`;
  await mongo.collection("notifications").updateOne(
    { _id: notificationId(key) },
    {
      $setOnInsert: {
        key,
        userId: ADMINS_USER_ID,
        contentSessionId: null,
        messageId: null,
        createdAt: alert.created_at,
        type: "provider_alert",
        toastMessage: alert.message,
        urgency: alert.severity === "critical" ? "high" : "medium",
        persistent: true,
        seen: false,
        seenAt: null,
        alertId: alert.id,
        provider: alert.provider,
        expireAt: new Date(alert.created_at.getTime() + NOTIFICATION_RETENTION_MS),
      },
    },
    { upsert: true },
  );
}
