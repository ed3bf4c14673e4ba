import assert from "node:assert/strict";
import type { Timestamp } from "firebase-admin/firestore";
import { releaseExpiredHold } from "../../functions/src/credits/holds";
import { notificationId } from "../../functions/src/notifications/notifications";
import { acknowledgeAlert, notifyAdminsOfAlert } from "../../functions/src/routing/alerts";
import { parseRouterConfig } from "../../functions/src/routing/config";
import {
  httpProbe,
  resetDueQuotas,
  runProviderHealthCheck,
  type ProviderHealthDeps,
  type Probe,
} from "../../functions/src/routing/provider-health";
import { retentionPolicies } from "../../functions/src/retention/policies";
import { NoProviderAvailable, routeTask } from "../../functions/src/routing/router";
import type { RouterConfig } from "../../functions/src/routing/schemas";
import { runTtlCleanup } from "../../functions/src/retention/runner";
import { startProviderStandin, type ProviderStandin } from "../../scripts/harness/provider-standin";
import { newUid } from "../support/suite";
import { closeMongo, firestore, fixedClock, mongo } from "../support/stores";

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
const PROBE_TIMEOUT_MS = 1000;

describe("integration: provider health check and model router", function () {
  this.timeout(60_000);
  const db = firestore();
  let standin: ProviderStandin;

  before(async () => {
    standin = await startProviderStandin();
  });
  after(async () => {
    await standin.close();
    await closeMongo();
  });

  function config(
    providers: Array<{ name: string; cost?: number; tasks?: string[] }>,
    extra: Partial<RouterConfig> = {},
  ): RouterConfig {
    return parseRouterConfig({
      providers: providers.map(({ name, cost = 1, tasks = ["chat"] }) => ({
        name,
        probe_url: standin.probeUrl(name),
        models: [{ id: `${name}-model`, task_types: tasks, cost_per_1k_tokens: cost }],
      })),
      slow_ms: 150,
      ewma_alpha: 0.5,
      error_window: 4,
      degraded_error_rate: 0.5,
      failures_to_down: 2,
      cooldown_ms: 20 * MINUTE,
      ...extra,
    });
  }

  async function health(provider: string): Promise<Record<string, unknown>> {
    return (await db.collection("model_provider_health").doc(provider).get()).data() ?? {};
  }

  async function alerts(provider: string) {
    const snapshot = await db.collection("model_router_alerts").where("provider", "==", provider).get();
    return snapshot.docs
      .map((doc): Record<string, unknown> & { id: string } => ({ id: doc.id, ...doc.data() }))
      .sort(
        (a, b) =>
          (a.created_at as { toMillis(): number }).toMillis() - (b.created_at as { toMillis(): number }).toMillis(),
      );
  }

  it("when a provider goes slow, fails, times out and recovers, then status, EWMA, error rate, cooldown and alerts follow, one alert per transition", async () => {
    const name = newUid("prov");
    const clock = fixedClock();
    const notified: string[] = [];
    const deps: ProviderHealthDeps = {
      db,
      clock,
      config: config([{ name }]),
      probe: httpProbe,
      probeTimeoutMs: PROBE_TIMEOUT_MS,
      notifyAdmins: async (alert) => {
        notified.push(alert.id);
        await notifyAdminsOfAlert(await mongo(), alert);
      },
    };
    const check = async (mode: "ok" | "slow" | "error" | "timeout") => {
      standin.set(name, mode === "slow" ? { mode, delayMs: 500 } : mode);
      clock.advance(5 * MINUTE);
      const outcome = await runProviderHealthCheck(deps);
      return outcome.providers.find((p) => p.provider === name)!;
    };

    const steps: Array<{
      mode: "ok" | "slow" | "error" | "timeout";
      status: string;
      alerts: number;
      failures: number;
      rate: number;
    }> = [
      { mode: "ok", status: "healthy", alerts: 0, failures: 0, rate: 0 },
      { mode: "slow", status: "degraded", alerts: 1, failures: 0, rate: 0 },
      { mode: "error", status: "degraded", alerts: 1, failures: 1, rate: 0.333 },
      { mode: "timeout", status: "down", alerts: 2, failures: 2, rate: 0.5 },
      { mode: "timeout", status: "down", alerts: 2, failures: 3, rate: 0.75 },
    ];
    for (const [index, step] of steps.entries()) {
      const outcome = await check(step.mode);
      const state = await health(name);
      assert.equal(outcome.status, step.status, `step ${index} (${step.mode})`);
      assert.equal(state.status, step.status);
      assert.equal(state.consecutive_failures, step.failures, `step ${index} failures`);
      assert.equal(state.error_rate, step.rate, `step ${index} error rate`);
      assert.equal((await alerts(name)).length, step.alerts, `step ${index}: alerts only on transitions`);
    }

    // Down: a cooldown from the last failure, the last error kept, the degraded alert resolved by the critical one.
    let state = await health(name);
    assert.equal((state.cooldown_until as { toMillis(): number }).toMillis(), clock.now().getTime() + 20 * MINUTE);
    assert.equal(state.last_error, `timeout after ${PROBE_TIMEOUT_MS} ms`);
    let raised = await alerts(name);
    assert.deepEqual(
      raised.map((a) => [a.type, a.severity, a.resolved]),
      [
        ["provider_degraded", "warning", true],
        ["provider_down", "critical", false],
      ],
    );
    assert.equal(state.open_alert_id, raised[1].id);

    // The EWMA is the stored checks folded with alpha = 0.5 (each step rounds to 0.1 ms).
    const checks = (await db.collection("model_provider_checks").where("provider", "==", name).get()).docs
      .map((doc) => doc.data() as { checked_at: Timestamp; expire_at: Timestamp; latency_ms: number })
      .sort((a, b) => a.checked_at.toMillis() - b.checked_at.toMillis());
    assert.equal(checks.length, 5, "each check is stored");
    assert.ok(
      checks.every((c) => c.expire_at.toMillis() > c.checked_at.toMillis()),
      "stored checks expire",
    );
    assert.ok(checks[1].latency_ms >= 500, "the slow answer's latency is measured");
    assert.equal(checks[3].latency_ms, PROBE_TIMEOUT_MS, "a timeout counts as the timeout");
    const ewma = checks.reduce(
      (value: number | undefined, c) => (value === undefined ? c.latency_ms : 0.5 * c.latency_ms + 0.5 * value),
      undefined,
    );
    assert.ok(
      Math.abs((state.latency_ms as number) - (ewma ?? 0)) < 0.5,
      `EWMA ${String(state.latency_ms)} vs ${ewma}`,
    );

    // Recovery: the first success leaves down (degraded by error rate), resolving the critical alert with one warning.
    assert.equal((await check("ok")).status, "degraded");
    raised = await alerts(name);
    assert.equal(raised.length, 3);
    assert.equal(raised[1].resolved, true);
    assert.equal(raised[2].severity, "warning");
    state = await health(name);
    assert.equal(state.consecutive_failures, 0);
    assert.ok(
      (state.cooldown_until as { toMillis(): number }).toMillis() > clock.now().getTime(),
      "the cooldown runs on after recovery",
    );

    // Successes bring the error rate down: healthy, every alert resolved, no new alert.
    assert.equal((await check("ok")).status, "degraded");
    assert.equal((await check("ok")).status, "healthy");
    raised = await alerts(name);
    assert.equal(raised.length, 3);
    assert.ok(raised.every((a) => a.resolved === true));
    assert.equal((await health(name)).open_alert_id, null);

    // Administrators were told about each raised alert, once each.
    assert.deepEqual([...notified].sort(), raised.map((a) => a.id).sort());
    const notifications = (await mongo()).collection("notifications");
    for (const alert of raised) {
      const doc = await notifications.findOne({ _id: notificationId(`alert:${alert.id}`) });
      assert.equal(doc?.userId, "admins");
      assert.equal(doc?.urgency, alert.severity === "critical" ? "high" : "normal");
    }
  });

  it("when the same alert is notified twice, then there is one notification", async () => {
    const id = newUid("alert");
    const alert = {
      id,
      type: "provider_down" as const,
      severity: "critical" as const,
      provider: "p",
      message: "m",
      from_status: "healthy" as const,
      to_status: "down" as const,
      acknowledged: false,
      resolved: false,
      created_at: new Date(),
    };
    await notifyAdminsOfAlert(await mongo(), alert);
    await notifyAdminsOfAlert(await mongo(), alert);
    assert.equal(await (await mongo()).collection("notifications").countDocuments({ dedupeKey: `alert:${id}` }), 1);
  });

  it("when a provider is in cooldown, then the router avoids it, picks the next one, and logs the decision with expire_at", async () => {
    const [flaky, steady] = [newUid("flaky"), newUid("steady")];
    const clock = fixedClock();
    // The flaky provider is cheaper and first in the fallback order, so only health keeps the router away from it.
    const routerConfig = config(
      [
        { name: flaky, cost: 0.1 },
        { name: steady, cost: 1 },
      ],
      { failures_to_down: 1, fallback_order: [flaky, steady] },
    );
    const deps: ProviderHealthDeps = {
      db,
      clock,
      config: routerConfig,
      probe: httpProbe,
      probeTimeoutMs: PROBE_TIMEOUT_MS,
    };

    standin.set(flaky, "ok");
    standin.set(steady, "ok");
    await runProviderHealthCheck(deps);
    const before = await routeTask({ db, clock, config: routerConfig }, { task_type: "chat", job_id: newUid("job") });
    assert.equal(before.selected_provider, flaky);

    standin.set(flaky, { mode: "error", statusCode: 500 });
    clock.advance(MINUTE);
    await runProviderHealthCheck(deps);
    standin.set(flaky, "ok");
    clock.advance(MINUTE);
    await runProviderHealthCheck(deps);
    const recovered = await health(flaky);
    assert.notEqual(recovered.status, "down", "it answers again");
    assert.ok((recovered.cooldown_until as { toMillis(): number }).toMillis() > clock.now().getTime());

    const jobId = newUid("job");
    const decision = await routeTask({ db, clock, config: routerConfig }, { task_type: "chat", job_id: jobId });
    assert.equal(decision.selected_provider, steady);
    assert.equal(decision.selected_model, `${steady}-model`);
    assert.deepEqual(decision.skipped, [{ provider: flaky, model: `${flaky}-model`, reason: "cooldown" }]);

    const logged = await db.collection("routing_decisions").doc(decision.decision_id).get();
    assert.equal(logged.get("job_id"), jobId);
    assert.equal(logged.get("task_type"), "chat");
    assert.equal(logged.get("selected_provider"), steady);
    assert.equal(logged.get("score"), decision.score);
    assert.equal((logged.get("timestamp") as Timestamp).toMillis(), clock.now().getTime());
    assert.equal((logged.get("expire_at") as Timestamp).toMillis(), clock.now().getTime() + 30 * 24 * 60 * MINUTE);

    // Once the cooldown has run out, the cheaper provider is chosen again.
    clock.advance(21 * MINUTE);
    const after = await routeTask({ db, clock, config: routerConfig }, { task_type: "chat", job_id: newUid("job") });
    assert.equal(after.selected_provider, flaky);
  });

  it("when a model's quota is exhausted or it does not serve the task, then the router skips it; with nothing left it refuses and still logs", async () => {
    const [full, other] = [newUid("full"), newUid("other")];
    const clock = fixedClock();
    const routerConfig = config([
      { name: full, cost: 0.1 },
      { name: other, cost: 1, tasks: ["embedding"] },
    ]);
    await db
      .collection("model_quotas")
      .doc(`${full}_${full}-model`)
      .set({ tokens_used: 1000, tokens_limit: 1000, reset_at: new Date(clock.now().getTime() + MINUTE) });
    const jobId = newUid("job");
    await assert.rejects(
      routeTask({ db, clock, config: routerConfig }, { task_type: "chat", job_id: jobId }),
      NoProviderAvailable,
    );
    const logged = await db.collection("routing_decisions").where("job_id", "==", jobId).get();
    assert.equal(logged.size, 1);
    assert.equal(logged.docs[0].get("selected_provider"), null);
    assert.deepEqual(logged.docs[0].get("skipped"), [
      { provider: full, model: `${full}-model`, reason: "quota_exhausted" },
    ]);

    const embedding = await routeTask(
      { db, clock, config: routerConfig },
      { task_type: "embedding", job_id: newUid("job") },
    );
    assert.equal(embedding.selected_provider, other);
  });

  it("when a quota's reset_at has passed, then it is reset once and moved past now; a quota not yet due is left alone", async () => {
    const clock = fixedClock();
    const now = clock.now().getTime();
    const [due, notDue] = [newUid("quota"), newUid("quota")];
    await db
      .collection("model_quotas")
      .doc(due)
      .set({ tokens_used: 900, tokens_limit: 1000, reset_at: new Date(now - MINUTE), period_ms: 60 * MINUTE });
    await db
      .collection("model_quotas")
      .doc(notDue)
      .set({ tokens_used: 900, tokens_limit: 1000, reset_at: new Date(now + MINUTE) });

    assert.ok((await resetDueQuotas(db, clock)) >= 1);
    assert.equal(await resetDueQuotas(db, clock), 0, "a second run finds nothing due");

    const reset = (await db.collection("model_quotas").doc(due).get()).data() ?? {};
    assert.equal(reset.tokens_used, 0);
    assert.equal((reset.reset_at as Timestamp).toMillis(), now - MINUTE + 60 * MINUTE);
    const untouched = (await db.collection("model_quotas").doc(notDue).get()).data() ?? {};
    assert.equal(untouched.tokens_used, 900);
  });

  /** One ttlCleanup run of the alerts policy alone, at the clock's time. */
  async function alertRetention(clock: { now(): Date }) {
    const policies = retentionPolicies().filter((policy) => policy.name === "acknowledged_alerts");
    return runTtlCleanup({
      db,
      clock,
      policies,
      releaseExpiredHold,
      budgetMs: 60_000,
      pageSize: 500,
      stateId: newUid("ttl-state"),
    });
  }

  /** A provider that went down on its first failed check, with its open critical alert. */
  async function providerDown() {
    const name = newUid("prov");
    const clock = fixedClock();
    const deps: ProviderHealthDeps = {
      db,
      clock,
      config: config([{ name }], { failures_to_down: 1 }),
      probe: httpProbe,
      probeTimeoutMs: PROBE_TIMEOUT_MS,
    };
    standin.set(name, { mode: "error", statusCode: 503 });
    await runProviderHealthCheck(deps);
    const down = await health(name);
    assert.equal(down.status, "down");
    return { name, clock, deps, alertId: down.open_alert_id as string };
  }

  it("when a down provider's alert is acknowledged and retention runs past its age, then the alert stays, and the provider still leaves down", async () => {
    const { name, clock, deps, alertId } = await providerDown();
    await acknowledgeAlert({ db, clock }, { alert_id: alertId }, "admin-1");

    // Retention runs while the provider is still down, long after the alert was raised.
    clock.advance(91 * DAY);
    await alertRetention(clock);
    assert.equal((await db.collection("model_router_alerts").doc(alertId).get()).exists, true, "an open alert is kept");

    standin.set(name, "ok");
    clock.advance(5 * MINUTE);
    const recovered = await runProviderHealthCheck(deps);
    assert.deepEqual(recovered.failed, []);
    assert.notEqual((await health(name)).status, "down");
    const resolved = (await db.collection("model_router_alerts").doc(alertId).get()).data() ?? {};
    assert.equal(resolved.resolved, true);
    assert.notEqual((await health(name)).open_alert_id, alertId);

    // Once resolved (and acknowledged, and old), retention may take it.
    clock.advance(91 * DAY);
    await alertRetention(clock);
    assert.equal((await db.collection("model_router_alerts").doc(alertId).get()).exists, false);
  });

  it("when a provider's open alert was deleted, then its next transition still goes through and the provider leaves down", async () => {
    const { name, clock, deps, alertId } = await providerDown();
    // As the old retention (or a hand in the console) did: the alert is gone, the pointer stays.
    await db.collection("model_router_alerts").doc(alertId).delete();

    standin.set(name, "ok");
    for (let tick = 0; tick < 3; tick++) {
      clock.advance(5 * MINUTE);
      const outcome = await runProviderHealthCheck(deps);
      assert.deepEqual(outcome.failed, [], `tick ${tick}`);
    }
    const state = await health(name);
    assert.equal(state.status, "healthy");
    assert.equal(state.open_alert_id, null);
    assert.equal(
      (await db.collection("model_router_alerts").doc(alertId).get()).exists,
      false,
      "a deleted alert is not brought back",
    );
  });

  it("when one provider's check throws, then the other providers are checked, the failure is reported with its reason, and due quotas are reset", async () => {
    const [broken, steady] = [newUid("broken"), newUid("steady")];
    const clock = fixedClock();
    const quota = newUid("quota");
    await db
      .collection("model_quotas")
      .doc(quota)
      .set({
        tokens_used: 700,
        tokens_limit: 1000,
        reset_at: new Date(clock.now().getTime() - MINUTE),
        period_ms: 60 * MINUTE,
      });
    standin.set(steady, "ok");
    const probe: Probe = async (provider, timeoutMs) => {
      if (provider.name === broken) throw new Error("probe client crashed");
      return httpProbe(provider, timeoutMs);
    };
    const deps: ProviderHealthDeps = {
      db,
      clock,
      config: config([{ name: broken }, { name: steady }]),
      probe,
      probeTimeoutMs: PROBE_TIMEOUT_MS,
    };

    const outcome = await runProviderHealthCheck(deps);

    assert.deepEqual(outcome.failed, [{ provider: broken, error: "probe client crashed" }]);
    assert.deepEqual(
      outcome.providers.map((p) => [p.provider, p.status]),
      [[steady, "healthy"]],
    );
    assert.equal((await health(steady)).status, "healthy");
    assert.ok(outcome.quotas_reset >= 1);
    assert.equal((await db.collection("model_quotas").doc(quota).get()).get("tokens_used"), 0, "the quota reset ran");
  });

  it("when one due quota cannot be reset, then the others are still reset and the run ends", async () => {
    const clock = fixedClock();
    const due = new Date(clock.now().getTime() - MINUTE);
    const [bad, good] = [newUid("quota-a"), newUid("quota-b")];
    await db
      .collection("model_quotas")
      .doc(bad)
      .set({ tokens_used: 5, tokens_limit: 10, reset_at: due, period_ms: "weekly" });
    await db
      .collection("model_quotas")
      .doc(good)
      .set({ tokens_used: 5, tokens_limit: 10, reset_at: due, period_ms: 60 * MINUTE });

    await resetDueQuotas(db, clock, 1);

    assert.equal((await db.collection("model_quotas").doc(good).get()).get("tokens_used"), 0);
    assert.equal(
      (await db.collection("model_quotas").doc(bad).get()).get("tokens_used"),
      5,
      "the malformed quota is left as it is",
    );
  });
});
