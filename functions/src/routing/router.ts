/**
 * The model router: picks a provider and model for a task type from health
 * (providers down or in cooldown are skipped), quota headroom and cost, keeps
 * the rest as an ordered fallback list, and logs the decision in
 * `routing_decisions` (with `expire_at`, for native TTL).
 *
 * Score = 0.5 × health (healthy 1, degraded or unknown 0.5)
 *       + 0.3 × quota headroom (1 without a quota)
 *       + 0.2 × cheapness (1 − cost ÷ the dearest candidate's cost).
 * Equal scores keep the configured fallback order.
 */
import type { Firestore } from "firebase-admin/firestore";
import { Unavailable } from "../shared/errors";
import { logs } from "../shared/logs";
import { DAY_MS, type Clock } from "../shared/time";
import { PROVIDER_HEALTH, QUOTAS } from "./provider-health";
import { RouteTaskInput, type RouterConfig } from "./schemas";

export const ROUTING_DECISIONS = "routing_decisions";
const DECISION_RETENTION_MS = 30 * DAY_MS;

export interface RouteDeps {
  db: Firestore;
  clock: Clock;
  config: RouterConfig;
}

export interface Choice {
  provider: string;
  model: string;
  score: number;
}

export interface Skipped {
  provider: string;
  model: string;
  reason: "down" | "cooldown" | "quota_exhausted";
}

export interface RoutingDecision {
  decision_id: string;
  job_id: string;
  task_type: string;
  selected_provider: string;
  selected_model: string;
  score: number;
  fallbacks: Choice[];
  skipped: Skipped[];
}

/** Thrown when no configured provider can take the task; the decision is still logged. */
export class NoProviderAvailable extends Unavailable {
  constructor(taskType: string) {
    super("model router", `no provider can serve task type ${taskType} now`);
  }
}

/** Routes one task; see the module comment. Jobs call this when they dispatch. */
export async function routeTask(deps: RouteDeps, rawInput: RouteTaskInput): Promise<RoutingDecision> {
  const input = RouteTaskInput.parse(rawInput);
  const { db, config } = deps;
  const now = deps.clock.now();
  const serving = config.providers.flatMap((provider) =>
    provider.models
      .filter((model) => model.task_types.includes("*") || model.task_types.includes(input.task_type))
      .map((model) => ({ provider, model })),
  );
  const healthDocs =
    serving.length > 0
      ? await db.getAll(
          ...unique(serving.map((c) => c.provider.name)).map((name) => db.collection(PROVIDER_HEALTH).doc(name)),
        )
      : [];
  const quotaDocs =
    serving.length > 0
      ? await db.getAll(...serving.map((c) => db.collection(QUOTAS).doc(`${c.provider.name}_${c.model.id}`)))
      : [];
  const health = new Map(healthDocs.map((doc) => [doc.id, doc.data()]));
  const quotas = new Map(quotaDocs.map((doc) => [doc.id, doc.data()]));

  const skipped: Skipped[] = [];
  const eligible: Array<{
    provider: string;
    model: string;
    health: number;
    headroom: number;
    cost: number;
    order: number;
  }> = [];
  const orderOf = (name: string) => {
    const index = config.fallback_order.indexOf(name);
    return index < 0 ? config.fallback_order.length + config.providers.findIndex((p) => p.name === name) : index;
  };
  for (const { provider, model } of serving) {
    const state = health.get(provider.name);
    const cooldownUntil = (state?.cooldown_until as { toMillis(): number } | null | undefined)?.toMillis() ?? 0;
    const quota = quotas.get(`${provider.name}_${model.id}`);
    const limit = Number(quota?.tokens_limit ?? 0);
    const used = Number(quota?.tokens_used ?? 0);
    const base = { provider: provider.name, model: model.id };
    if (state?.status === "down") skipped.push({ ...base, reason: "down" });
    else if (cooldownUntil > now.getTime()) skipped.push({ ...base, reason: "cooldown" });
    else if (limit > 0 && used + input.estimated_tokens >= limit) skipped.push({ ...base, reason: "quota_exhausted" });
    else {
      eligible.push({
        ...base,
        health: state?.status === "healthy" ? 1 : 0.5,
        headroom: limit > 0 ? (limit - used) / limit : 1,
        cost: model.cost_per_1k_tokens,
        order: orderOf(provider.name),
      });
    }
  }
  const dearest = Math.max(0, ...eligible.map((candidate) => candidate.cost));
  const ranked = eligible
    .map((candidate) => ({
      provider: candidate.provider,
      model: candidate.model,
      order: candidate.order,
      score: round(
        0.5 * candidate.health + 0.3 * candidate.headroom + 0.2 * (dearest > 0 ? 1 - candidate.cost / dearest : 1),
      ),
    }))
    .sort((a, b) => b.score - a.score || a.order - b.order);

  const ref = db.collection(ROUTING_DECISIONS).doc();
  const [selected, ...rest] = ranked;
  const fallbacks = rest.map(({ provider, model, score }) => ({ provider, model, score }));
  await ref.set({
    job_id: input.job_id,
    task_type: input.task_type,
    selected_provider: selected?.provider ?? null,
    selected_model: selected?.model ?? null,
    score: selected?.score ?? null,
    fallbacks,
    skipped,
    timestamp: now,
    expire_at: new Date(now.getTime() + DECISION_RETENTION_MS),
  });
  logs.routeDecided({
    decision_id: ref.id,
    job_id: input.job_id,
    task_type: input.task_type,
    provider: selected?.provider ?? null,
    model: selected?.model ?? null,
    skipped: skipped.length,
  });
  if (!selected) throw new NoProviderAvailable(input.task_type);
  return {
    decision_id: ref.id,
    job_id: input.job_id,
    task_type: input.task_type,
    selected_provider: selected.provider,
    selected_model: selected.model,
    score: selected.score,
    fallbacks,
    skipped,
  };
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
