/**
 * Every setting of the suite, as firebase-functions params.
 *
 * No default points at a developer's machine: a deployed function must never
 * quietly probe 127.0.0.1. The optional services (Redis, MongoDB, the default
 * model providers) default to empty, which turns that component off with one
 * log line per instance (`component_disabled`). The local harness writes the
 * local values to functions/.env.local, so `npm start` and the tests need no
 * configuration. `.value()` is only called at run time, inside handlers, never
 * at import.
 */
import { defineInt, defineSecret, defineString } from "firebase-functions/params";

export const ENVIRONMENT = defineString("ENVIRONMENT", {
  default: "development",
  description: "Name reported by /api/health (development, staging, production).",
});

export const REDIS_URL = defineString("REDIS_URL", {
  default: "",
  description:
    "Redis for cache, rate limits, streams and live notifications, e.g. redis://10.0.0.3:6379. Empty disables it.",
});

export const REDIS_COMMAND_TIMEOUT_MS = defineInt("REDIS_COMMAND_TIMEOUT_MS", {
  default: 250,
  description: "Upper bound for one Redis command; Redis is an accelerator, never worth waiting for.",
});

export const MONGODB_URI = defineString("MONGODB_URI", {
  default: "",
  description:
    "MongoDB holding content sessions and notifications. Empty disables them (their callables answer unavailable).",
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

// ---------------------------------------------------------------- Embeddings

export const EMBEDDING_PROVIDER = defineString("EMBEDDING_PROVIDER", {
  default: "local",
  description:
    "Embedding provider: local (deterministic hashed n-grams, offline), openai (any OpenAI-compatible endpoint) or vertex.",
});

export const EMBEDDING_MODEL = defineString("EMBEDDING_MODEL", {
  default: "",
  description:
    "Model id; empty picks the provider's default (local-hash-v1, text-embedding-3-small, text-embedding-005).",
});

export const EMBEDDING_DIMS = defineInt("EMBEDDING_DIMS", {
  default: 384,
  description:
    "Vector dimension; must match what the model returns. Each model/dimension pair gets its own LanceDB table.",
});

export const EMBEDDING_BATCH_SIZE = defineInt("EMBEDDING_BATCH_SIZE", {
  default: 64,
  description: "Texts per provider request.",
});

export const EMBEDDING_BASE_URL = defineString("EMBEDDING_BASE_URL", {
  default: "",
  description:
    "Provider endpoint; empty picks the default (https://api.openai.com/v1, or the Vertex AI regional endpoint).",
});

export const EMBEDDING_API_KEY = defineSecret("EMBEDDING_API_KEY");

export const VERTEX_LOCATION = defineString("VERTEX_LOCATION", {
  default: "us-central1",
  description: "Vertex AI region for text embeddings.",
});

export const EMBEDDING_CHUNK_SIZE = defineInt("EMBEDDING_CHUNK_SIZE", {
  default: 800,
  description: "Target chunk length in characters; chunks end on sentence boundaries where possible.",
});

export const EMBEDDING_CHUNK_OVERLAP = defineInt("EMBEDDING_CHUNK_OVERLAP", {
  default: 120,
  description: "Characters of trailing context repeated at the start of the next chunk.",
});

export const EMBEDDING_MAX_DELIVERIES = defineInt("EMBEDDING_MAX_DELIVERIES", {
  default: 5,
  description:
    "Deliveries of one message with transient failures before it is dead-lettered (where the platform redelivers).",
});

export const EMBEDDING_PROVIDER_ATTEMPTS = defineInt("EMBEDDING_PROVIDER_ATTEMPTS", {
  default: 4,
  description:
    "Attempts per provider request within one delivery, with exponential backoff, for 429, 5xx and timeouts.",
});

export const VECTOR_INDEX_THRESHOLD = defineInt("VECTOR_INDEX_THRESHOLD", {
  default: 100000,
  description: "Rows after which a LanceDB table gets an IVF_PQ vector index; below it searches are flat (exact).",
});

export const KNOWLEDGE_OWNER_UIDS = defineString("KNOWLEDGE_OWNER_UIDS", {
  default: "",
  description: "Comma-separated uids allowed to ingest and delete knowledge besides holders of the admin claim.",
});

// Scheduled: plan allowances (grantAllowances).

export const ALLOWANCE_TIME_BUDGET_SECONDS = defineInt("ALLOWANCE_TIME_BUDGET_SECONDS", {
  default: 240,
  description:
    "How long one grantAllowances run works before it saves its place and stops (the function's timeout is 540 s).",
});

export const ALLOWANCE_PAGE_SIZE = defineInt("ALLOWANCE_PAGE_SIZE", {
  default: 300,
  description: "Users read per page by grantAllowances.",
});

// Scheduled: retention (ttlCleanup) and provider health / model router.

export const TTL_TIME_BUDGET_SECONDS = defineInt("TTL_TIME_BUDGET_SECONDS", {
  default: 240,
  description:
    "How long one ttlCleanup run works before it saves its place and stops (the function's timeout is 540 s).",
});

export const TTL_PAGE_SIZE = defineInt("TTL_PAGE_SIZE", {
  default: 500,
  description: "Documents read per page by ttlCleanup.",
});

export const ROUTING_DECISIONS_RETENTION_DAYS = defineInt("ROUTING_DECISIONS_RETENTION_DAYS", {
  default: 30,
  description: "Age after which routing_decisions are deleted.",
});

export const ALERTS_RETENTION_DAYS = defineInt("ALERTS_RETENTION_DAYS", {
  default: 90,
  description: "Age after which acknowledged model_router_alerts are deleted (unacknowledged ones are kept).",
});

export const AUDIT_RETENTION_DAYS = defineInt("AUDIT_RETENTION_DAYS", {
  default: 365,
  description: "Age after which audit_logs entries are deleted by ttlCleanup; 0 keeps them forever.",
});

export const OPERATION_QUEUE_RETENTION_HOURS = defineInt("OPERATION_QUEUE_RETENTION_HOURS", {
  default: 24,
  description: "Age after which applied or rejected RTDB operation_queues entries are removed.",
});

export const LANCEDB_VERSION_RETENTION_HOURS = defineInt("LANCEDB_VERSION_RETENTION_HOURS", {
  default: 24,
  description: "LanceDB table versions older than this are cleaned up after compaction.",
});

export const MODEL_PROVIDERS = defineString("MODEL_PROVIDERS", {
  default: "",
  description:
    "Default model providers (JSON array of {name, probe_url, models}) when Firestore config/model_router has none. With neither, model routing and provider probes are off.",
});

export const PROVIDER_PROBE_TIMEOUT_MS = defineInt("PROVIDER_PROBE_TIMEOUT_MS", {
  default: 3000,
  description: "Timeout of one provider health probe.",
});

/** Region of every function; one place so the wiring test can assert it. */
export const REGION = "us-central1";

export const RATE_LIMIT_SPEND_PER_MINUTE = defineInt("RATE_LIMIT_SPEND_PER_MINUTE", {
  default: 300,
  description: "Spends (callable, metering endpoint, offline queue) one user may make per minute, counted in Redis.",
});

export const RATE_LIMIT_SPEND_FALLBACK_PER_INSTANCE = defineInt("RATE_LIMIT_SPEND_FALLBACK_PER_INSTANCE", {
  default: 15,
  description:
    "Spends one user may make per minute on one instance while Redis is down; instances do not share it, so the outage bound is maxInstances (20) × this.",
});

export const LOW_BALANCE_THRESHOLD = defineInt("LOW_BALANCE_THRESHOLD", {
  default: 20,
  description: "Available credits below which a user is notified once per crossing.",
});

/** API key the app's own servers send to the metering endpoint (Secret Manager). */
export const METERING_API_KEY = defineSecret("METERING_API_KEY");

// ---------------------------------------------------------------- Jobs

/** API key workers outside Functions send to the jobReport endpoint (Secret Manager). */
export const WORKER_API_KEY = defineSecret("WORKER_API_KEY");

export const JOBS_VISIBILITY_TIMEOUT_MS = defineInt("JOBS_VISIBILITY_TIMEOUT_MS", {
  default: 300000,
  description: "A jobs:{type} stream entry unacknowledged this long is re-claimed by jobsSweeper and queued again.",
});

export const JOBS_STREAM_MAX_LENGTH = defineInt("JOBS_STREAM_MAX_LENGTH", {
  default: 10000,
  description:
    "Approximate cap of each jobs:{type} stream and its DLQ (XADD MAXLEN ~); an unread entry lost to it is sent again by jobsSweeper.",
});

export const JOBS_MAX_DELIVERIES = defineInt("JOBS_MAX_DELIVERIES", {
  default: 5,
  description:
    "Deliveries of one stream entry after which it moves to jobs:{type}:dlq and its job fails (hold released).",
});

// ---------------------------------------------------------------- Payments (Stripe)

/** Stripe's secret API key (Secret Manager); attached only to the function that calls Stripe. */
export const STRIPE_SECRET_KEY = defineSecret("STRIPE_SECRET_KEY");

/** The webhook endpoint's signing secret (`whsec_…`); attached only to stripeWebhook. */
export const STRIPE_WEBHOOK_SECRET = defineSecret("STRIPE_WEBHOOK_SECRET");

export const STRIPE_API_BASE = defineString("STRIPE_API_BASE", {
  default: "",
  description:
    "Origin of the Stripe API, e.g. http://127.0.0.1:12111 for a local stand-in. Empty (production) is Stripe itself.",
});
