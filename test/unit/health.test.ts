import assert from "node:assert/strict";
import { COMPONENTS, checkHealth, type Probes } from "../../functions/src/health/check";

const up = () => Promise.resolve();
const fail = (message: string) => () => Promise.reject(new Error(message));
const never = () => new Promise<never>(() => undefined);

function probes(overrides: Partial<Probes> = {}): Probes {
  return { firestore: up, rtdb: up, redis: up, mongodb: up, lancedb: up, pubsub: up, ...overrides };
}

describe("unit: health summary", () => {
  it("when every component answers, then status is ok and every component is up with a latency", async () => {
    const report = await checkHealth({ probes: probes(), timeoutMs: 200, environment: "test", version: "1.2.3" });
    assert.equal(report.status, "ok");
    assert.equal(report.version, "1.2.3");
    assert.equal(report.environment, "test");
    assert.deepEqual(Object.keys(report.components).sort(), [...COMPONENTS].sort());
    for (const name of COMPONENTS) {
      assert.equal(report.components[name], "up");
      assert.ok("latency_ms" in report.details[name] && !("error" in report.details[name]));
    }
  });

  it("when an optional component fails, then status is degraded and its error is in details", async () => {
    const report = await checkHealth({
      probes: probes({ redis: fail("ECONNREFUSED 127.0.0.1:6379") }),
      timeoutMs: 200,
      environment: "test",
      version: "0",
    });
    assert.equal(report.status, "degraded");
    assert.equal(report.components.redis, "down");
    assert.deepEqual((report.details.redis as { error: string }).error, "ECONNREFUSED 127.0.0.1:6379");
  });

  it("when the required component (firestore) fails, then status is down", async () => {
    const report = await checkHealth({
      probes: probes({ firestore: fail("unavailable") }),
      timeoutMs: 200,
      environment: "t",
      version: "0",
    });
    assert.equal(report.status, "down");
  });

  it("when a component hangs, then it is reported down after its own timeout and the others are unaffected", async () => {
    const started = Date.now();
    const report = await checkHealth({
      probes: probes({ mongodb: never, lancedb: never }),
      timeoutMs: 50,
      environment: "t",
      version: "0",
    });
    assert.equal(report.status, "degraded");
    assert.match((report.details.mongodb as { error: string }).error, /timeout after 50 ms/);
    assert.equal(report.components.firestore, "up");
    // Concurrent probes: two hanging components cost one timeout, not two (a bound, far from the expected 50 ms).
    assert.ok(Date.now() - started < 2000);
  });
});
