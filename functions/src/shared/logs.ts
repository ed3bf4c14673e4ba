/**
 * The catalogue of structured log messages.
 *
 * Each entry has a stable message name so logs can be searched and alerted on;
 * fields are ids and counts, never secrets or whole payloads.
 */
import * as logger from "firebase-functions/logger";

type Fields = Record<string, string | number | boolean | null | undefined>;

export const logs = {
  healthChecked: (fields: Fields) => logger.info("health_checked", fields),
  componentDown: (component: string, error: string) => logger.warn("component_down", { component, error }),
  redisCircuitOpened: (failures: number, cooldownMs: number) =>
    logger.warn("redis_circuit_opened", { failures, cooldown_ms: cooldownMs }),
  redisCircuitClosed: () => logger.info("redis_circuit_closed"),
  queuedOperation: (uid: string, opId: string, outcome: string, code?: string) =>
    logger.info("queued_operation", { uid, op_id: opId, outcome, code }),
  knowledgeIngestRequested: (fields: Fields) => logger.info("knowledge_ingest_requested", fields),
  knowledgeDeleted: (fields: Fields) => logger.info("knowledge_deleted", fields),
  embeddingIndexed: (fields: Fields) => logger.info("embedding_indexed", fields),
  embeddingSkipped: (messageId: string, sourceId: string, reason: "unchanged" | "stale") =>
    logger.info("embedding_skipped", { message_id: messageId, source_id: sourceId, reason }),
  embeddingRetry: (messageId: string, sourceId: string, attempts: number, error: string) =>
    logger.warn("embedding_retry", { message_id: messageId, source_id: sourceId, attempts, error }),
  embeddingDeadLettered: (messageId: string, sourceId: string | undefined, attempts: number, error: string) =>
    logger.error("embedding_dead_lettered", { message_id: messageId, source_id: sourceId ?? null, attempts, error }),
  toolsSeeded: (table: string, tools: number) => logger.info("tools_seeded", { table, tools }),
  jobDispatched: (jobId: string, outcome: string, error?: string) =>
    (outcome === "pending" ? logger.warn : logger.info)("job_dispatched", { job_id: jobId, outcome, error: error ?? null }),
  jobReported: (jobId: string, kind: string, applied: boolean) => logger.info("job_reported", { job_id: jobId, kind, applied }),
  jobReportRejected: (messageId: string, error: string) => logger.warn("job_report_rejected", { message_id: messageId, error }),
  jobsSwept: (fields: Fields) => logger.info("jobs_swept", fields),
  jobNotifyFailed: (jobId: string, error: string) => logger.warn("job_notify_failed", { job_id: jobId, error }),
  unexpectedError: (where: string, error: unknown) =>
    logger.error("unexpected_error", { where, error: error instanceof Error ? error.stack ?? error.message : String(error) }),
};
