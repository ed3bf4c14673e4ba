/**
 * Every setting of the suite, as firebase-functions params.
 *
 * Each optional service has an embedded default that works on a developer's
 * machine, so `npm start` needs no configuration. `.value()` is only called at
 * run time, inside handlers, never at import.
 */
import { defineInt, defineSecret, defineString } from "firebase-functions/params";

export const ENVIRONMENT = defineString("ENVIRONMENT", {
  default: "development",
  description: "Name reported by /api/health (development, staging, production).",
});

export const REDIS_URL = defineString("REDIS_URL", {
  default: "redis://127.0.0.1:6379",
  description: "Redis for cache, rate limits, streams and live notifications. Empty disables it.",
});

export const REDIS_COMMAND_TIMEOUT_MS = defineInt("REDIS_COMMAND_TIMEOUT_MS", {
  default: 250,
  description: "Upper bound for one Redis command; Redis is an accelerator, never worth waiting for.",
});

export const MONGODB_URI = defineString("MONGODB_URI", {
  default: "mongodb://127.0.0.1:27017",
  description: "MongoDB holding content sessions and notifications.",
});

export const MONGODB_DB = defineString("MONGODB_DB", {
  default: "metered_ai",
  description: "MongoDB database name.",
});

export const LANCEDB_URI = defineString("LANCEDB_URI", {
  default: "/tmp/metered-ai-lancedb",
  description: "LanceDB location: a local folder in development, gs://bucket/path in production.",
});

export const HEALTH_TIMEOUT_MS = defineInt("HEALTH_TIMEOUT_MS", {
  default: 1500,
  description: "Per-component timeout of /api/health.",
});

/** Region of every function; one place so the wiring test can assert it. */
export const REGION = "us-central1";

/** Settings as they are used at run time, with secrets and credentials left out. */
export function redactedConfig(): Record<string, string | number> {
  return {
    environment: ENVIRONMENT.value(),
    redis_url: redactUrl(REDIS_URL.value()),
    mongodb_uri: redactUrl(MONGODB_URI.value()),
    mongodb_db: MONGODB_DB.value(),
    lancedb_uri: LANCEDB_URI.value(),
  };
}

/** Drops user info (passwords) from a connection URL. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.username || parsed.password) {
      parsed.username = "***";
      parsed.password = "";
    }
    return parsed.toString();
  } catch {
    return url === "" ? "" : "<unparseable>";
  }
}

export const RATE_LIMIT_SPEND_PER_MINUTE = defineInt("RATE_LIMIT_SPEND_PER_MINUTE", {
  default: 300,
  description: "Spends (callable, metering endpoint, offline queue) one user may make per minute; half of it per instance while Redis is down.",
});

export const LOW_BALANCE_THRESHOLD = defineInt("LOW_BALANCE_THRESHOLD", {
  default: 20,
  description: "Available credits below which a user is notified once per crossing.",
});

/** API key the app's own servers send to the metering endpoint (Secret Manager). */
export const METERING_API_KEY = defineSecret("METERING_API_KEY");
