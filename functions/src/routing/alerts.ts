/**
 * Alerts of the model router: acknowledging them (admin callable) and telling
 * administrators about new ones through a notification.
 */
import type { Firestore } from "firebase-admin/firestore";
import type { Db } from "mongodb";
import { firestoreValues } from "../adapters/firebase";
import { notify } from "../notifications/notifications";
import { NotFound } from "../shared/errors";
import type { Clock } from "../shared/time";
import type { Alert } from "./provider-health";
import { ALERTS } from "./provider-health";
import type { AcknowledgeAlertInput } from "./schemas";

/** The notification audience for operator alerts. */
export const ADMINS_USER_ID = "admins";
/** Admin alert notifications are kept 30 days (persistent user notifications, 365). */
const NOTIFICATION_RETENTION_DAYS = 30;

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
 * Tells the administrators about an alert through the notifications module
 * (the collection's one writer). The dedupe key `alert:{alertId}` makes a
 * repeat change nothing.
 *
 * Urgency: a critical alert (a provider down) is `high`. A warning (a provider
 * degraded) is `normal`: the router already routes around it and nothing is
 * lost meanwhile, but an administrator should look at it, so not `low`.
 * The notification's `messageId` is the alert id, what an admin acknowledges.
 */
export async function notifyAdminsOfAlert(mongo: Db, alert: Alert): Promise<void> {
  await notify(
    // Dated by the alert, not by when the notification is written, as the alert's other records are.
    { mongo, clock: { now: () => alert.created_at } },
    {
      userId: ADMINS_USER_ID,
      type: "provider_alert",
      toastMessage: alert.message,
      urgency: alert.severity === "critical" ? "high" : "normal",
      persistent: true,
      dedupeKey: `alert:${alert.id}`,
      messageId: alert.id,
      retainDays: NOTIFICATION_RETENTION_DAYS,
    },
  );
}
