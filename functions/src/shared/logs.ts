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
  ttlPolicyApplied: (fields: Fields) => logger.info("ttl_policy_applied", fields),
  ttlPolicyFailed: (policy: string, error: string) => logger.error("ttl_policy_failed", { policy, error }),
  ttlCleanupFinished: (fields: Fields) => logger.info("ttl_cleanup_finished", fields),
  providerChecked: (fields: Fields) => logger.info("provider_checked", fields),
  providerTransition: (fields: Fields) => logger.warn("provider_transition", fields),
  quotasReset: (count: number) => logger.info("quotas_reset", { count }),
  routerConfigInvalid: (issues: string) => logger.error("router_config_invalid", { issues }),
  routeDecided: (fields: Fields) => logger.info("route_decided", fields),
  alertAcknowledged: (alertId: string, uid: string, changed: boolean) => logger.info("alert_acknowledged", { alert_id: alertId, uid, changed }),
  notificationFailed: (id: string, error: unknown) =>
    logger.warn("notification_failed", { id, error: error instanceof Error ? error.message : String(error) }),
  scheduleSkipped: (name: string, outcome: string) => logger.info("schedule_skipped", { name, outcome }),
  unexpectedError: (where: string, error: unknown) =>
    logger.error("unexpected_error", { where, error: error instanceof Error ? error.stack ?? error.message : String(error) }),
};
