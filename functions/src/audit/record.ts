/**
 * Audit entries: one `audit_logs/{eventId}` per event on a sensitive document.
 *
 * The event id is the document id, and the entry is created with `create()`,
 * so a redelivered event finds its entry and writes nothing: exactly one entry
 * per distinct event, whatever the delivery.
 */
import type { Firestore } from "firebase-admin/firestore";
import { changedFields, redact } from "./redact";

export const AUDIT_LOGS = "audit_logs";
const DAY_MS = 86_400_000;

export interface AuditEvent {
  eventId: string;
  path: string;
  /** Event time (ISO) from the trigger. */
  time: string;
  before?: Record<string, unknown>;
  after?: Record<string, unknown>;
}

export function changeKind(event: Pick<AuditEvent, "before" | "after">): "create" | "update" | "delete" {
  if (!event.before) return "create";
  if (!event.after) return "delete";
  return "update";
}

/** Who made the change, when the writer recorded it (`updated_by`, as the credits code does). */
export function actorOf(event: Pick<AuditEvent, "before" | "after">): string | null {
  // A deleted document says who wrote it last, not who deleted it: unknown.
  const source = event.after;
  const actor = source?.updated_by ?? source?.acknowledged_by ?? null;
  return typeof actor === "string" ? actor : null;
}

/** Records the event once; returns false when it was already recorded. */
export async function recordAudit(db: Firestore, event: AuditEvent, retentionDays: number): Promise<boolean> {
  const time = new Date(event.time);
  const entry = {
    event_id: event.eventId,
    path: event.path,
    collection: event.path.split("/")[0],
    kind: changeKind(event),
    changed_fields: changedFields(event.before, event.after),
    before: event.before ? redact(event.before) : null,
    after: event.after ? redact(event.after) : null,
    actor: actorOf(event),
    time,
    // Retention ages entries by created_at, like every other log collection.
    created_at: time,
    // Informational (when retention will remove it); 0 days means kept forever.
    expire_at: retentionDays > 0 ? new Date(time.getTime() + retentionDays * DAY_MS) : null,
  };
  try {
    await db.collection(AUDIT_LOGS).doc(event.eventId.replace(/\//g, "_")).create(entry);
    return true;
  } catch (error) {
    if ((error as { code?: number }).code === 6) return false; // ALREADY_EXISTS: a redelivery
    throw error;
  }
}
