/**
 * Retention policies as data: what `ttlCleanup` may remove, and nothing else.
 *
 * Each policy names a store, where to look, the timestamp it ages by, an
 * optional extra condition and an action. The runner (runner.ts) interprets the
 * table with one strategy per store (stores/); adding a policy is adding a row.
 */
import type { Firestore } from "firebase-admin/firestore";
import { DAY_MS, HOUR_MS, type Clock } from "../shared/time";

/** An equality condition a Firestore document must also meet. */
export interface FieldCondition {
  field: string;
  op: "==";
  value: string | number | boolean;
}

/** Documents of a Firestore collection whose timestamp is older than `ageMs`. */
export interface FirestorePolicy {
  name: string;
  store: "firestore";
  collection: string;
  timestampField: string;
  /** 0 means "as soon as the timestamp has passed" (for expiry fields). */
  ageMs: number;
  where: FieldCondition[];
  /** `delete`, or a named action resolved from the runner's dependencies (never a plain delete). */
  action: "delete" | "release_hold" | "expire_lot";
  /**
   * A live document that points at a matched one by id (its `field` holds the
   * id) keeps it: retention never deletes what something live still references.
   */
  keepReferencedBy?: { collection: string; field: string };
}

/** RTDB `{path}/{parent}/{child}` entries whose status is done and whose `processed_at` (ms) is old. */
export interface RtdbQueuePolicy {
  name: string;
  store: "rtdb";
  path: string;
  timestampField: string;
  ageMs: number;
  statusIn: string[];
  action: "delete";
}

/** MongoDB documents whose expiry date has passed. */
export interface MongoPolicy {
  name: string;
  store: "mongodb";
  collection: string;
  timestampField: string;
  ageMs: number;
  action: "delete";
}

/** Compaction of every LanceDB table and cleanup of versions older than `ageMs`. */
export interface LancePolicy {
  name: string;
  store: "lancedb";
  ageMs: number;
  action: "compact";
}

export type RetentionPolicy = FirestorePolicy | RtdbQueuePolicy | MongoPolicy | LancePolicy;

/** The moment before which a timestamp is older than `ageMs`. */
export function cutoff(now: Date, ageMs: number): Date {
  return new Date(now.getTime() - ageMs);
}

/** Settings the table is built from (params in production, fixed values in tests). */
export interface RetentionSettings {
  routingDecisionsDays: number;
  alertsDays: number;
  /** 0 disables the audit policy: entries are kept forever. */
  auditDays: number;
  operationQueueHours: number;
  lanceVersionHours: number;
}

export const DEFAULT_RETENTION: RetentionSettings = {
  routingDecisionsDays: 30,
  alertsDays: 90,
  auditDays: 0,
  operationQueueHours: 24,
  lanceVersionHours: 24,
};

/** The suite's retention table. */
export function retentionPolicies(settings: RetentionSettings = DEFAULT_RETENTION): RetentionPolicy[] {
  const policies: RetentionPolicy[] = [
    {
      name: "expired_holds",
      store: "firestore",
      collection: "credit_holds",
      timestampField: "expires_at",
      ageMs: 0,
      where: [{ field: "status", op: "==", value: "open" }],
      // Money: never deleted. A job's hold expires by failing its job (jobs/expiry.ts, which owns it),
      // any other hold through credits; either way with one ledger entry.
      action: "release_hold",
    },
    {
      name: "expired_lots",
      store: "firestore",
      collection: "credit_lots",
      timestampField: "expires_at",
      ageMs: 0,
      where: [{ field: "status", op: "==", value: "active" }],
      // Money: never deleted. Credits expires the lot's unheld credits with one ledger entry; what holds
      // reserve from it expires when they are released (credits/lot-views.ts expireDueLot).
      action: "expire_lot",
    },
    {
      name: "routing_decisions",
      store: "firestore",
      collection: "routing_decisions",
      timestampField: "timestamp",
      ageMs: settings.routingDecisionsDays * DAY_MS,
      where: [],
      action: "delete",
    },
    {
      name: "acknowledged_alerts",
      store: "firestore",
      collection: "model_router_alerts",
      timestampField: "created_at",
      ageMs: settings.alertsDays * DAY_MS,
      // Only alerts that are over: an acknowledged alert can still be open (its provider still down).
      where: [
        { field: "acknowledged", op: "==", value: true },
        { field: "resolved", op: "==", value: true },
      ],
      action: "delete",
      // Health resolves an alert and clears its pointer in one transaction; this guards any other pointer.
      keepReferencedBy: { collection: "model_provider_health", field: "open_alert_id" },
    },
    {
      name: "processed_events",
      store: "firestore",
      collection: "processed_events",
      timestampField: "expire_at",
      ageMs: 0,
      where: [],
      action: "delete",
    },
    {
      name: "idempotency_keys",
      store: "firestore",
      collection: "idempotency_keys",
      timestampField: "expire_at",
      ageMs: 0,
      where: [],
      action: "delete",
    },
    {
      // Kept STRIPE_EVENTS_RETENTION_DAYS (30), well past the three days Stripe redelivers an event for.
      name: "stripe_events",
      store: "firestore",
      collection: "stripe_events",
      timestampField: "expire_at",
      ageMs: 0,
      where: [],
      action: "delete",
    },
    {
      name: "provider_checks",
      store: "firestore",
      collection: "model_provider_checks",
      timestampField: "expire_at",
      ageMs: 0,
      where: [],
      action: "delete",
    },
  ];
  if (settings.auditDays > 0) {
    policies.push({
      name: "audit_logs",
      store: "firestore",
      collection: "audit_logs",
      timestampField: "created_at",
      ageMs: settings.auditDays * DAY_MS,
      where: [],
      action: "delete",
    });
  }
  policies.push(
    {
      name: "operation_queues",
      store: "rtdb",
      path: "operation_queues",
      timestampField: "processed_at",
      ageMs: settings.operationQueueHours * HOUR_MS,
      statusIn: ["applied", "rejected"],
      action: "delete",
    },
    {
      name: "notifications",
      store: "mongodb",
      collection: "notifications",
      timestampField: "expireAt",
      ageMs: 0,
      action: "delete",
    },
    {
      name: "lancedb_versions",
      store: "lancedb",
      ageMs: settings.lanceVersionHours * HOUR_MS,
      action: "compact",
    },
  );
  return policies;
}

/**
 * Expires one hold: the interface the `release_hold` action calls. The
 * implementation (jobs/expiry.ts `expireHolds`) asks the hold's owner: the
 * jobs module fails a job and settles its hold in one transaction, credits
 * expires a hold without a job. It must settle a hold at most once and be a
 * no-op for a hold that is no longer open.
 */
export type ReleaseExpiredHold = (db: Firestore, holdId: string, clock: Clock) => Promise<unknown>;

/**
 * Expires one credit lot past its expiry: the interface the `expire_lot`
 * action calls (credits' `expireDueLot` unless a test gives another). It must
 * expire a lot at most once and be a no-op for a lot that is not due.
 */
export type ExpireLot = (db: Firestore, lotId: string, clock: Clock) => Promise<unknown>;
