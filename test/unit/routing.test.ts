import assert from "node:assert/strict";
import fc from "fast-check";
import { parseRouterConfig } from "../../functions/src/routing/config";
import { nextHealth, type HealthState, type ProbeResult } from "../../functions/src/routing/provider-health";
import { LOCAL_MODEL_PROVIDERS } from "../../scripts/harness/local-params";

const settings = {
  ewma_alpha: 0.3,
  error_window: 5,
  degraded_error_rate: 0.4,
  failures_to_down: 3,
  cooldown_ms: 60_000,
  slow_ms: 500,
};
const ok = (latency = 10): ProbeResult => ({ ok: true, latency_ms: latency, error: null });
const fail = (error = "HTTP 503"): ProbeResult => ({ ok: false, latency_ms: 20, error });

describe("unit: routing", () => {
  describe("nextHealth", () => {
    const now = new Date("2026-01-01T00:00:00Z");

    it("when probes fail up to the threshold, then degraded, then down with a cooldown; a success resets failures but not the cooldown", () => {
      let state: HealthState | undefined;
      const statuses: string[] = [];
      for (let i = 0; i < 3; i++) {
        state = nextHealth(state, "p", fail(), settings, now);
        statuses.push(state.status);
      }
      assert.deepEqual(statuses, ["degraded", "degraded", "down"]);
      assert.equal(state?.cooldown_until?.getTime(), now.getTime() + 60_000);
      assert.equal(state?.last_error, "HTTP 503");
      const later = new Date(now.getTime() + 1000);
      const recovered = nextHealth(state, "p", ok(), settings, later);
      assert.equal(recovered.consecutive_failures, 0);
      assert.notEqual(recovered.status, "down");
      assert.equal(recovered.cooldown_until?.getTime(), now.getTime() + 60_000);
    });

    it("for any sequence of probes, then the error rate is the failed share of the last window and the EWMA stays within the samples' range", () => {
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 5000 })), { minLength: 1, maxLength: 40 }),
          (probes) => {
            let state: HealthState | undefined;
            for (const [success, latency] of probes) {
              state = nextHealth(
                state,
                "p",
                success ? ok(latency) : { ok: false, latency_ms: latency, error: "x" },
                settings,
                now,
              );
            }
            const window = probes.slice(-settings.error_window);
            const expected = window.filter(([success]) => !success).length / window.length;
            assert.ok(Math.abs((state?.error_rate ?? -1) - expected) < 0.001);
            const latencies = probes.map(([, latency]) => latency);
            assert.ok(
              (state?.latency_ms ?? -1) >= Math.min(...latencies) - 0.1 &&
                (state?.latency_ms ?? -1) <= Math.max(...latencies) + 0.1,
            );
            let trailing = 0;
            for (let i = probes.length - 1; i >= 0 && !probes[i][0]; i--) trailing++;
            assert.equal(state?.consecutive_failures, trailing);
            assert.equal(state?.status === "down", trailing >= settings.failures_to_down);
          },
        ),
      );
    });

    it("when the EWMA latency exceeds slow_ms while probes succeed, then degraded", () => {
      const state = nextHealth(nextHealth(undefined, "p", ok(100), settings, now), "p", ok(2000), settings, now);
      assert.equal(state.latency_ms, 0.3 * 2000 + 0.7 * 100);
      assert.equal(state.status, "degraded");
    });
  });

  describe("router configuration", () => {
    it("when a provider entry has an unknown field or an unsafe name, then it is rejected", () => {
      const provider = {
        name: "a",
        probe_url: "http://x/health",
        models: [{ id: "m", task_types: ["*"], cost_per_1k_tokens: 0 }],
      };
      assert.ok(parseRouterConfig({ providers: [provider] }).providers.length === 1);
      assert.throws(() => parseRouterConfig({ providers: [{ ...provider, api_key: "k" }] }), { name: "ZodError" });
      assert.throws(() => parseRouterConfig({ providers: [{ ...provider, name: "a/b" }] }), { name: "ZodError" });
    });

    it("when the harness's local MODEL_PROVIDERS is parsed, then it is a valid configuration", () => {
      assert.ok(parseRouterConfig({ providers: JSON.parse(LOCAL_MODEL_PROVIDERS) as unknown }).providers.length >= 1);
    });
  });
});
