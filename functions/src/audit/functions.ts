/**
 * Audit triggers: one factory, one function per audited path (users, router
 * alerts, configuration), all recording through recordAudit.
 */
import { onDocumentWritten } from "firebase-functions/v2/firestore";
import { firestore } from "../adapters/firebase";
import { AUDIT_RETENTION_DAYS } from "../config";
import { logs } from "../shared/logs";
import { recordAudit } from "./record";

function auditTrigger(document: string) {
  return onDocumentWritten({ document, retry: true, timeoutSeconds: 60 }, async (event) => {
    const before = event.data?.before;
    const after = event.data?.after;
    const path = (after ?? before)?.ref.path ?? document;
    const created = await recordAudit(
      firestore(),
      {
        eventId: event.id,
        path,
        time: event.time,
        before: before?.exists ? before.data() : undefined,
        after: after?.exists ? after.data() : undefined,
      },
      AUDIT_RETENTION_DAYS.value(),
    );
    logs.auditRecorded(path, event.id, created);
  });
}

export const auditUsers = auditTrigger("users/{uid}");
export const auditRouterAlerts = auditTrigger("model_router_alerts/{alertId}");
export const auditConfig = auditTrigger("config/{configId}");
