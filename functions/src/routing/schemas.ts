/**
 * Schemas of the routing capability: the model router's configuration
 * (Firestore `config/model_router`, defaults from the MODEL_PROVIDERS param)
 * and the admin callable's input.
 */
import * as z from "zod";
import { documentId } from "../shared/ids";

export const ModelConfig = z
  .object({
    id: z.string().min(1).max(200),
    /** Task types this model serves; "*" serves every task type. */
    task_types: z.array(z.string().min(1)).min(1),
    cost_per_1k_tokens: z.number().min(0),
  })
  .strict();

export const ProviderConfig = z
  .object({
    /** Also the id of `model_provider_health/{name}`, so restricted to id-safe characters. */
    name: documentId({
      max: 100,
      pattern: { regex: /^[A-Za-z0-9_.-]+$/, message: "letters, digits, '_', '.', '-' (1-100)" },
    }),
    probe_url: z.url(),
    models: z.array(ModelConfig).min(1),
  })
  .strict();

export const RouterConfig = z
  .object({
    providers: z.array(ProviderConfig),
    /** Provider names in the order the router falls back through on equal scores; unnamed providers come last. */
    fallback_order: z.array(z.string()).default([]),
    probe_timeout_ms: z.number().int().positive().optional(),
    /** An EWMA latency above this makes a provider degraded. */
    slow_ms: z.number().positive().default(2000),
    /** Weight of the newest sample in the EWMA latency. */
    ewma_alpha: z.number().gt(0).max(1).default(0.3),
    /** Number of recent checks the error rate is computed over. */
    error_window: z.number().int().min(1).max(100).default(20),
    /** An error rate at or above this makes a provider degraded. */
    degraded_error_rate: z.number().min(0).max(1).default(0.2),
    /** Consecutive failures that make a provider down (and start its cooldown). */
    failures_to_down: z.number().int().min(1).default(3),
    /** How long the router avoids a provider after it went down, even if it answers again meanwhile. */
    cooldown_ms: z.number().int().min(0).default(300_000),
    /** How long each stored check is kept. */
    check_retention_days: z.number().positive().default(7),
  })
  .strict();

export type ModelConfig = z.infer<typeof ModelConfig>;
export type ProviderConfig = z.infer<typeof ProviderConfig>;
export type RouterConfig = z.infer<typeof RouterConfig>;

export const AcknowledgeAlertInput = z
  .object({
    alert_id: documentId({ max: 300 }),
  })
  .strict();
export type AcknowledgeAlertInput = z.infer<typeof AcknowledgeAlertInput>;

export const RouteTaskInput = z
  .object({
    task_type: z.string().min(1).max(100),
    job_id: documentId({ max: 300 }),
    estimated_tokens: z.number().int().min(0).default(0),
  })
  .strict();
export type RouteTaskInput = z.input<typeof RouteTaskInput>;
