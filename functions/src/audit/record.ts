/**
 * Audit entries: one `audit_logs/{eventId}` per event on a sensitive document.
 *
 * The event id is the document id, and the entry is created with `create()`,
 * so a redelivered event finds its entry and writes nothing: exactly one entry
 * per distinct event, whatever the delivery.
 */
import type { Firestore } from "firebase-admin/firestore";
import { DAY_MS } from "../shared/time";
import { changedFields, redact } from "./redact";

export const AUDIT_LOGS = "audit_logs";

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

/** The actor of a write no server code vouched for (a console edit, a script, a delete). */
export const UNKNOWN_ACTOR = "unknown";

/**
 * Who made this write. Every server write to an audited document sets
 * `updated_by` together with a fresh `updated_at` (server time). A field
 * persists across writes, so `updated_by` names this write's actor only when
 * this same write moved `updated_at`; a write that left `updated_at` as it was
 * (an edit in the console, a script) did not say who it is: `unknown`. A
 * delete says nothing about who deleted: `unknown`.
 */
export function actorOf(event: Pick<AuditEvent, "before" | "after">): string {
  const { before, after } = event;
  if (!after) return UNKNOWN_ACTOR;
  const actor = after.updated_by;
  if (typeof actor !== "string" || after.updated_at === undefined || after.updated_at === null) return UNKNOWN_ACTOR;
  const markerMoved = !before || !sameInstant(before.updated_at, after.updated_at);
  return markerMoved ? actor : UNKNOWN_ACTOR;
}

interface Instant {
  seconds: number;
  nanoseconds: number;
}

function isInstant(value: unknown): value is Instant {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as Instant).seconds === "number" &&
    typeof (value as Instant).nanoseconds === "number"
  );
}

/** Equal timestamps to the nanosecond (Firestore's precision); other values by their JSON. */
function sameInstant(a: unknown, b: unknown): boolean {
  if (isInstant(a) && isInstant(b)) return a.seconds === b.seconds && a.nanoseconds === b.nanoseconds;
  return JSON.stringify(a) === JSON.stringify(b);
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
