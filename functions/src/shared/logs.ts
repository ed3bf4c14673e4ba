/**
 * The catalogue of structured log messages.
 *
 * Each entry has a stable message name so logs can be searched and alerted on;
 * fields are ids and counts, never secrets or whole payloads.
 */
import * as logger from "firebase-functions/logger";

type Fields = Record<string, string | number | boolean | null | undefined>;

/** Components already reported disabled by this instance: the line is worth reading once, not per call. */
const reportedDisabled = new Set<string>();

export const logs = {
  healthChecked: (fields: Fields) => logger.info("health_checked", fields),
  componentDown: (component: string, error: string) => logger.warn("component_down", { component, error }),
  /** Once per instance: an optional component is off because nothing configures it. */
  componentDisabled: (component: string, reason: string) => {
    if (reportedDisabled.has(component)) return;
    reportedDisabled.add(component);
    logger.warn("component_disabled", { component, reason });
  },
  redisCircuitOpened: (failures: number, cooldownMs: number) =>
    logger.warn("redis_circuit_opened", { failures, cooldown_ms: cooldownMs }),
  redisCircuitClosed: () => logger.info("redis_circuit_closed"),
  queuedOperation: (uid: string, opId: string, outcome: string, code?: string) =>
    logger.info("queued_operation", { uid, op_id: opId, outcome, code }),
  accountClosed: (uid: string, eventId: string, jobsFailed: number, holdsReleased: number, errors: number) =>
    logger.info("account_closed", {
      uid,
      event_id: eventId,
      jobs_failed: jobsFailed,
      holds_released: holdsReleased,
      errors,
    }),
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
  balanceMirrored: (uid: string, eventId: string, outcome: string, version: number | null) =>
    logger.info("balance_mirrored", { uid, event_id: eventId, outcome, version }),
  auditRecorded: (path: string, eventId: string, created: boolean) =>
    logger.info("audit_recorded", { path, event_id: eventId, created }),
  ttlPolicyApplied: (fields: Fields) => logger.info("ttl_policy_applied", fields),
  ttlPolicyFailed: (policy: string, error: string) => logger.error("ttl_policy_failed", { policy, error }),
  ttlCleanupFinished: (fields: Fields) => logger.info("ttl_cleanup_finished", fields),
  providerChecked: (fields: Fields) => logger.info("provider_checked", fields),
  providerTransition: (fields: Fields) => logger.warn("provider_transition", fields),
  providerCheckFailed: (provider: string, error: string) => logger.error("provider_check_failed", { provider, error }),
  providerAlertMissing: (provider: string, alertId: string) =>
    logger.warn("provider_alert_missing", { provider, alert_id: alertId }),
  quotasReset: (count: number) => logger.info("quotas_reset", { count }),
  quotaResetFailed: (quotaId: string, error: string) =>
    logger.error("quota_reset_failed", { quota_id: quotaId, error }),
  routerConfigInvalid: (issues: string) => logger.error("router_config_invalid", { issues }),
  plansConfigInvalid: (issues: string) => logger.error("plans_config_invalid", { issues }),
  allowanceFailed: (uid: string, period: string, reason: string) =>
    logger.error("allowance_failed", { uid, period, reason }),
  allowancesRun: (fields: Fields) => logger.info("allowances_run", fields),
  expiryWarningsRun: (fields: Fields) => logger.info("expiry_warnings_run", fields),
  routeDecided: (fields: Fields) => logger.info("route_decided", fields),
  alertAcknowledged: (alertId: string, uid: string, changed: boolean) =>
    logger.info("alert_acknowledged", { alert_id: alertId, uid, changed }),
  notificationFailed: (id: string, error: unknown) =>
    logger.warn("notification_failed", { id, error: error instanceof Error ? error.message : String(error) }),
  scheduleSkipped: (name: string, outcome: string) => logger.info("schedule_skipped", { name, outcome }),
  jobDispatched: (jobId: string, outcome: string, error?: string) =>
    (outcome === "pending" ? logger.warn : logger.info)("job_dispatched", {
      job_id: jobId,
      outcome,
      error: error ?? null,
    }),
  jobReported: (jobId: string, kind: string, applied: boolean) =>
    logger.info("job_reported", { job_id: jobId, kind, applied }),
  jobReportRejected: (messageId: string, error: string) =>
    logger.warn("job_report_rejected", { message_id: messageId, error }),
  jobsSwept: (fields: Fields) => logger.info("jobs_swept", fields),
  jobHoldSettledElsewhere: (jobId: string, reported: string, recorded: string) =>
    logger.error("job_hold_settled_elsewhere", { job_id: jobId, reported, recorded }),
  jobQuarantined: (jobId: string, reason: string, error: string, attempts: number) =>
    logger.error("job_quarantined", { job_id: jobId, reason, error, attempts }),
  jobStreamEntryLost: (jobId: string, stream: string, entryId: string | null) =>
    logger.warn("job_stream_entry_lost", { job_id: jobId, stream, entry_id: entryId }),
  jobNotifyFailed: (jobId: string, error: string) => logger.warn("job_notify_failed", { job_id: jobId, error }),
  creditPacksInvalid: (issues: string) => logger.error("credit_packs_invalid", { issues }),
  checkoutCreated: (uid: string, paymentId: string, sessionId: string, replayed: boolean) =>
    logger.info("checkout_created", { uid, payment_id: paymentId, session_id: sessionId, replayed }),
  stripeCustomerCreated: (uid: string, customerId: string, stored: boolean) =>
    logger.info("stripe_customer_created", { uid, customer_id: customerId, stored }),
  /** A webhook request whose signature could not be verified: nothing was applied. */
  stripeWebhookRejected: (reason: string) => logger.warn("stripe_webhook_rejected", { reason }),
  stripeEventApplied: (fields: Fields) => logger.info("stripe_event_applied", fields),
  /** A paid session whose amount or currency is not what the payment recorded: granted nothing. */
  stripeAmountMismatch: (fields: Fields) => logger.error("stripe_amount_mismatch", fields),
  /** A checkout saved the buyer's card for off-session charges (auto top-up). */
  paymentMethodSaved: (fields: Fields) => logger.info("payment_method_saved", fields),
  autoTopUpSet: (fields: Fields) => logger.info("auto_topup_set", fields),
  /** An auto top-up's charge was sent to Stripe (or declined, or could not be tried). */
  autoTopUpCharged: (fields: Fields) => logger.info("auto_topup_charged", fields),
  /** Three declines in a row: auto top-up turned itself off. */
  autoTopUpDisabled: (fields: Fields) => logger.warn("auto_topup_disabled", fields),
  unexpectedError: (where: string, error: unknown) =>
    logger.error("unexpected_error", {
      where,
      error: error instanceof Error ? (error.stack ?? error.message) : String(error),
    }),
};
