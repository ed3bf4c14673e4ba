/**
 * Wiring of the scheduled use cases to the live adapters and params; loaded
 * by the schedule triggers at run time only.
 */
import { firestore, realtimeDb } from "../adapters/firebase";
import { lanceDb } from "../adapters/lance";
import { mongoDb } from "../adapters/mongo";
import {
  ALERTS_RETENTION_DAYS,
  AUDIT_RETENTION_DAYS,
  LANCEDB_VERSION_RETENTION_HOURS,
  MODEL_PROVIDERS,
  OPERATION_QUEUE_RETENTION_HOURS,
  PROVIDER_PROBE_TIMEOUT_MS,
  ROUTING_DECISIONS_RETENTION_DAYS,
  TTL_PAGE_SIZE,
  TTL_TIME_BUDGET_SECONDS,
} from "../config";
import { runOnce } from "../shared/dedupe";
import { logs } from "../shared/logs";
import { systemClock } from "../shared/time";
import { notifyAdminsOfAlert } from "./alerts";
import { loadRouterConfig } from "./config";
import { expireHolds } from "../jobs/expiry";
import { redis } from "../adapters/redis";
import { retentionPolicies } from "./policies";
import { httpProbe, runProviderHealthCheck } from "./providerHealth";
import { runTtlCleanup } from "./ttl";

/** One ttlCleanup tick; a repeated delivery of the same tick is skipped. */
export async function runScheduledTtlCleanup(scheduleTime: string): Promise<void> {
  const db = firestore();
  const outcome = await runOnce(
    db,
    "ttlCleanup",
    scheduleTime,
    async () => {
      const result = await runTtlCleanup({
        db,
        clock: systemClock,
        policies: retentionPolicies({
          routingDecisionsDays: ROUTING_DECISIONS_RETENTION_DAYS.value(),
          alertsDays: ALERTS_RETENTION_DAYS.value(),
          auditDays: AUDIT_RETENTION_DAYS.value(),
          operationQueueHours: OPERATION_QUEUE_RETENTION_HOURS.value(),
          lanceVersionHours: LANCEDB_VERSION_RETENTION_HOURS.value(),
        }),
        // Job holds expire through their job (the jobs module owns them); others through credits.
        releaseExpiredHold: expireHolds({ rtdb: realtimeDb(), mongo: mongoDb, redis: redis() }),
        rtdb: realtimeDb,
        mongo: mongoDb,
        lance: lanceDb,
        budgetMs: TTL_TIME_BUDGET_SECONDS.value() * 1000,
        pageSize: TTL_PAGE_SIZE.value(),
      });
      for (const policy of result.policies) {
        if (policy.error) logs.ttlPolicyFailed(policy.policy, policy.error);
        else {
          logs.ttlPolicyApplied({
            policy: policy.policy,
            matched: policy.matched,
            applied: policy.applied,
            skipped: policy.skipped,
            pages: policy.pages,
            done: policy.done,
          });
        }
      }
      logs.ttlCleanupFinished({ complete: result.complete, policies: result.policies.length });
    },
    { leaseMs: 600_000, retainDays: 2 },
  );
  if (outcome !== "done") logs.scheduleSkipped("ttlCleanup", outcome);
}

/** One providerHealthCheck tick; a repeated delivery of the same tick is skipped. */
export async function runScheduledHealthCheck(scheduleTime: string): Promise<void> {
  const db = firestore();
  const outcome = await runOnce(
    db,
    "providerHealthCheck",
    scheduleTime,
    async () => {
      const result = await runProviderHealthCheck({
        db,
        clock: systemClock,
        config: await loadRouterConfig(db, MODEL_PROVIDERS.value()),
        probe: httpProbe,
        probeTimeoutMs: PROVIDER_PROBE_TIMEOUT_MS.value(),
        notifyAdmins: async (alert) => notifyAdminsOfAlert(await mongoDb(), alert),
      });
      logs.quotasReset(result.quotas_reset);
    },
    { leaseMs: 150_000, retainDays: 1 },
  );
  if (outcome !== "done") logs.scheduleSkipped("providerHealthCheck", outcome);
}
