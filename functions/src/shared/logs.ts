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
  unexpectedError: (where: string, error: unknown) =>
    logger.error("unexpected_error", { where, error: error instanceof Error ? error.stack ?? error.message : String(error) }),
};
