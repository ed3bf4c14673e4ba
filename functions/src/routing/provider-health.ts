/**
 * The `providerHealthCheck` use case: probe every configured provider
 * concurrently, fold each result into `model_provider_health/{provider}`,
 * store the check (expiring), raise or resolve `model_router_alerts` on status
 * transitions, and reset quotas whose `reset_at` has passed.
 *
 * Alerts follow transitions only, so a provider that stays down raises no
 * further alert (no storm). Each transition resolves the provider's open alert;
 * a transition to degraded or down raises exactly one new alert, a transition
 * back to healthy raises none.
 */
import type { DocumentReference, FieldValue, Firestore, QueryDocumentSnapshot } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { logs } from "../shared/logs";
import { DAY_MS, TimeoutError, type Clock, withTimeout } from "../shared/time";
import type { ProviderConfig, RouterConfig } from "./schemas";

export const PROVIDER_HEALTH = "model_provider_health";
export const PROVIDER_CHECKS = "model_provider_checks";
export const ALERTS = "model_router_alerts";
export const QUOTAS = "model_quotas";

const HEALTH_ACTOR = "system:providerHealthCheck";

export type ProviderStatus = "healthy" | "degraded" | "down";

export interface ProbeResult {
  ok: boolean;
  latency_ms: number;
  error: string | null;
}

/** Probes one provider; never throws. */
export type Probe = (provider: ProviderConfig, timeoutMs: number) => Promise<ProbeResult>;

/** What `model_provider_health/{provider}` holds. */
export interface HealthState {
  provider: string;
  status: ProviderStatus;
  /** EWMA of probe latencies (a timeout counts as the timeout). */
  latency_ms: number;
  /** Share of failed checks among the last `error_window` checks. */
  error_rate: number;
  /** Outcomes of the last checks, oldest first: 1 failed, 0 succeeded. */
  window: number[];
  consecutive_failures: number;
  cooldown_until: Date | null;
  last_check: Date;
  last_error: string | null;
  open_alert_id: string | null;
}

export interface Alert {
  id: string;
  type: "provider_degraded" | "provider_down";
  severity: "warning" | "critical";
  provider: string;
  message: string;
  from_status: ProviderStatus;
  to_status: ProviderStatus;
  acknowledged: boolean;
  resolved: boolean;
  created_at: Date;
}

export interface ProviderHealthDeps {
  db: Firestore;
  clock: Clock;
  config: RouterConfig;
  probe: Probe;
  probeTimeoutMs: number;
  /** Tells administrators about a new alert (best effort: a failure is logged, the check stands). */
  notifyAdmins?: (alert: Alert) => Promise<void>;
}

export interface ProviderCheckOutcome {
  provider: string;
  status: ProviderStatus;
  previous: ProviderStatus | null;
  alert_id: string | null;
  resolved_alert_id: string | null;
}

/** A provider whose check could not be recorded this tick, and why. */
export interface ProviderCheckFailure {
  provider: string;
  error: string;
}

export interface HealthCheckOutcome {
  providers: ProviderCheckOutcome[];
  failed: ProviderCheckFailure[];
  quotas_reset: number;
}

/** The pure fold of one probe result into a provider's health. */
export function nextHealth(
  previous: HealthState | undefined,
  provider: string,
  probe: ProbeResult,
  config: Pick<
    RouterConfig,
    "ewma_alpha" | "error_window" | "degraded_error_rate" | "failures_to_down" | "cooldown_ms" | "slow_ms"
  >,
  now: Date,
): HealthState {
  const window = [...(previous?.window ?? []), probe.ok ? 0 : 1].slice(-config.error_window);
  const errorRate = window.reduce((sum, failed) => sum + failed, 0) / window.length;
  const latency = previous
    ? config.ewma_alpha * probe.latency_ms + (1 - config.ewma_alpha) * previous.latency_ms
    : probe.latency_ms;
  const failures = probe.ok ? 0 : (previous?.consecutive_failures ?? 0) + 1;
  const status: ProviderStatus =
    failures >= config.failures_to_down
      ? "down"
      : !probe.ok || errorRate >= config.degraded_error_rate || latency > config.slow_ms
        ? "degraded"
        : "healthy";
  // Each failure while down pushes the cooldown on; a success leaves it to run out.
  const cooldownUntil =
    status === "down" ? new Date(now.getTime() + config.cooldown_ms) : (previous?.cooldown_until ?? null);
  return {
    provider,
    status,
    latency_ms: Math.round(latency * 10) / 10,
    error_rate: Math.round(errorRate * 1000) / 1000,
    window,
    consecutive_failures: failures,
    cooldown_until: cooldownUntil,
    last_check: now,
    last_error: probe.ok ? (previous?.last_error ?? null) : probe.error,
    open_alert_id: previous?.open_alert_id ?? null,
  };
}

/**
 * Runs one health check of every configured provider, then resets due quotas.
 * Each provider's check is isolated: one that throws is logged with its reason
 * and reported in `failed`, the other providers and the quota reset still run.
 */
export async function runProviderHealthCheck(deps: ProviderHealthDeps): Promise<HealthCheckOutcome> {
  const timeoutMs = deps.config.probe_timeout_ms ?? deps.probeTimeoutMs;
  const settled = await Promise.allSettled(
    deps.config.providers.map(async (provider) =>
      recordCheck(deps, provider.name, await deps.probe(provider, timeoutMs)),
    ),
  );
  const providers: ProviderCheckOutcome[] = [];
  const failed: ProviderCheckFailure[] = [];
  settled.forEach((result, index) => {
    if (result.status === "fulfilled") {
      providers.push(result.value);
      return;
    }
    const failure = { provider: deps.config.providers[index].name, error: reasonOf(result.reason) };
    logs.providerCheckFailed(failure.provider, failure.error);
    failed.push(failure);
  });
  const quotasReset = await resetDueQuotas(deps.db, deps.clock);
  return { providers, failed, quotas_reset: quotasReset };
}

function reasonOf(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0].slice(0, 200);
}

async function recordCheck(
  deps: ProviderHealthDeps,
  provider: string,
  probe: ProbeResult,
): Promise<ProviderCheckOutcome> {
  const { db, clock, config } = deps;
  const healthRef = db.collection(PROVIDER_HEALTH).doc(provider);
  const checkRef = db.collection(PROVIDER_CHECKS).doc();
  const outcome = await db.runTransaction(async (tx) => {
    const now = clock.now();
    const snapshot = await tx.get(healthRef);
    const previous = snapshot.exists ? fromFirestore(snapshot.data() ?? {}) : undefined;
    const next = nextHealth(previous, provider, probe, config, now);
    const before: ProviderStatus = previous?.status ?? "healthy";
    let alert: Alert | null = null;
    let resolved: string | null = null;
    let missing: string | null = null;
    if (next.status !== before) {
      // The open alert may be gone (deleted by hand, or by retention before it kept open alerts):
      // then there is nothing to resolve, and the transition goes on without it.
      const open = next.open_alert_id ? await tx.get(db.collection(ALERTS).doc(next.open_alert_id)) : null;
      if (open?.exists) {
        resolved = open.id;
        tx.update(open.ref, { resolved: true, resolved_at: now, resolved_by_status: next.status, ...writtenBy() });
      } else {
        missing = next.open_alert_id;
      }
      next.open_alert_id = null;
      if (next.status !== "healthy") {
        const ref = db.collection(ALERTS).doc();
        alert = {
          id: ref.id,
          type: next.status === "down" ? "provider_down" : "provider_degraded",
          severity: next.status === "down" ? "critical" : "warning",
          provider,
          message: alertMessage(provider, before, next),
          from_status: before,
          to_status: next.status,
          acknowledged: false,
          resolved: false,
          created_at: now,
        };
        const { id: _id, ...fields } = alert;
        tx.create(ref, { ...fields, resolved_at: null, ...writtenBy() });
        next.open_alert_id = ref.id;
      }
    }
    tx.set(healthRef, next);
    tx.create(checkRef, {
      provider,
      ok: probe.ok,
      status: next.status,
      latency_ms: Math.round(probe.latency_ms * 10) / 10,
      error: probe.error,
      checked_at: now,
      expire_at: new Date(now.getTime() + config.check_retention_days * DAY_MS),
    });
    return { provider, status: next.status, previous: previous?.status ?? null, alert, resolved, missing };
  });

  if (outcome.missing) logs.providerAlertMissing(provider, outcome.missing);
  logs.providerChecked({ provider, status: outcome.status, ok: probe.ok, latency_ms: Math.round(probe.latency_ms) });
  if (outcome.status !== (outcome.previous ?? "healthy")) {
    logs.providerTransition({
      provider,
      from: outcome.previous ?? "healthy",
      to: outcome.status,
      alert_id: outcome.alert?.id ?? null,
    });
  }
  if (outcome.alert && deps.notifyAdmins) {
    await deps
      .notifyAdmins(outcome.alert)
      .catch((error: unknown) => logs.notificationFailed(outcome.alert?.id ?? "", error));
  }
  return {
    provider,
    status: outcome.status,
    previous: outcome.previous,
    alert_id: outcome.alert?.id ?? null,
    resolved_alert_id: outcome.resolved,
  };
}

/** The audit trail's actor of a health write to an alert (see audit/record.ts actorOf). */
function writtenBy(): { updated_by: string; updated_at: FieldValue } {
  return { updated_by: HEALTH_ACTOR, updated_at: firestoreValues().FieldValue.serverTimestamp() };
}

function alertMessage(provider: string, from: ProviderStatus, next: HealthState): string {
  const reason = next.last_error
    ? `: ${next.last_error}`
    : next.latency_ms > 0
      ? ` (latency ${Math.round(next.latency_ms)} ms)`
      : "";
  return `Provider ${provider} went from ${from} to ${next.status}${reason}`;
}

function fromFirestore(data: Record<string, unknown>): HealthState {
  const date = (value: unknown) =>
    value && typeof value === "object" && "toDate" in value ? (value as { toDate(): Date }).toDate() : null;
  return {
    provider: typeof data.provider === "string" ? data.provider : "",
    status: (data.status as ProviderStatus) ?? "healthy",
    latency_ms: Number(data.latency_ms ?? 0),
    error_rate: Number(data.error_rate ?? 0),
    window: Array.isArray(data.window) ? data.window.map(Number) : [],
    consecutive_failures: Number(data.consecutive_failures ?? 0),
    cooldown_until: date(data.cooldown_until),
    last_check: date(data.last_check) ?? new Date(0),
    last_error: typeof data.last_error === "string" ? data.last_error : null,
    open_alert_id: typeof data.open_alert_id === "string" ? data.open_alert_id : null,
  };
}

/**
 * Resets `model_quotas` whose `reset_at` has passed: `tokens_used` to 0 and
 * `reset_at` moved on by the quota's `period_ms` (a day by default) past now.
 * Each reset re-checks `reset_at` in its transaction, so a duplicate run resets once.
 * A quota whose reset fails is logged and passed over (the pages follow a
 * cursor, so it is not retried in a loop); the others are still reset.
 */
export async function resetDueQuotas(db: Firestore, clock: Clock, pageSize = 200): Promise<number> {
  const now = clock.now();
  const due = db.collection(QUOTAS).where("reset_at", "<=", now).orderBy("reset_at").orderBy("__name__");
  let reset = 0;
  let last: QueryDocumentSnapshot | undefined;
  for (;;) {
    const page = await (last ? due.startAfter(last) : due).limit(pageSize).get();
    for (const doc of page.docs) {
      try {
        if (await resetQuota(db, doc.ref, now)) reset += 1;
      } catch (error) {
        logs.quotaResetFailed(doc.id, reasonOf(error));
      }
    }
    if (page.size < pageSize) return reset;
    last = page.docs[page.docs.length - 1];
  }
}

async function resetQuota(db: Firestore, ref: DocumentReference, now: Date): Promise<boolean> {
  return db.runTransaction(async (tx) => {
    const fresh = await tx.get(ref);
    const resetAt = fresh.get("reset_at") as { toMillis(): number } | undefined;
    if (!resetAt || resetAt.toMillis() > now.getTime()) return false;
    const period = Number(fresh.get("period_ms") ?? DAY_MS);
    if (!Number.isFinite(period)) throw new Error(`period_ms is not a number: ${String(fresh.get("period_ms"))}`);
    const step = Math.max(60_000, period);
    const periods = Math.floor((now.getTime() - resetAt.toMillis()) / step) + 1;
    tx.update(ref, {
      tokens_used: 0,
      reset_at: new Date(resetAt.toMillis() + periods * step),
      last_reset_at: now,
    });
    return true;
  });
}

/** The real probe: an HTTP GET of the provider's probe URL; 2xx within the timeout is healthy. */
export const httpProbe: Probe = async (provider, timeoutMs) => {
  const start = performance.now();
  const controller = new AbortController();
  try {
    const response = await withTimeout(
      fetch(provider.probe_url, { method: "GET", signal: controller.signal }),
      timeoutMs,
      `probe ${provider.name}`,
    );
    // Drain the body so the connection is released.
    await response.arrayBuffer().catch(() => undefined);
    const latency = performance.now() - start;
    return response.ok
      ? { ok: true, latency_ms: latency, error: null }
      : { ok: false, latency_ms: latency, error: `HTTP ${response.status}` };
  } catch (error) {
    controller.abort();
    if (error instanceof TimeoutError)
      return { ok: false, latency_ms: timeoutMs, error: `timeout after ${timeoutMs} ms` };
    const cause =
      error instanceof Error ? ((error.cause as Error | undefined)?.message ?? error.message) : String(error);
    return { ok: false, latency_ms: performance.now() - start, error: cause.split("\n")[0].slice(0, 200) };
  }
};
