import assert from "node:assert/strict";
import { control, http, suite, waitFor } from "../support/suite";

interface Health {
  status: string;
  environment: string;
  version: string;
  components: Record<string, string>;
  details: Record<string, { latency_ms: number; error?: string }>;
}

const COMPONENTS = ["firestore", "rtdb", "redis", "mongodb", "lancedb", "pubsub"];

async function health(): Promise<{ status: number; body: Health; ms: number }> {
  const started = performance.now();
  const { status, body } = await http(`${suite.hostingOrigin}/api/health`, { timeoutMs: 20_000 });
  return { status, body: body as Health, ms: performance.now() - started };
}

describe("e2e: /api/health through the hosting rewrite", function () {
  this.timeout(120_000);

  after(() => control("redis/start"));

  it("when every component is up, then it answers 200 ok in the seed shape", async () => {
    // The first call of a cold instance loads every SDK, and on a loaded machine a probe can miss its 1.5 s
    // timeout: poll until one answer has every component up.
    const { status, body } = await waitFor(
      "health ok",
      async () => {
        const answer = await health();
        return answer.body.status === "ok" ? answer : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    assert.equal(status, 200);
    assert.deepEqual(Object.keys(body).sort(), ["components", "details", "environment", "status", "version"]);
    assert.deepEqual(Object.keys(body.components).sort(), [...COMPONENTS].sort());
    for (const name of COMPONENTS) {
      assert.equal(body.components[name], "up", `${name}: ${JSON.stringify(body.details[name])}`);
      assert.equal(typeof body.details[name].latency_ms, "number");
    }
    assert.equal(body.environment, "test");
  });

  it("when Redis is stopped during the run, then it answers degraded with Redis's error, well within the timeouts", async () => {
    await control("redis/stop");
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await health());
    for (const { status, body, ms } of answers) {
      assert.equal(status, 200);
      assert.equal(body.status, "degraded");
      assert.equal(body.components.redis, "down");
      assert.ok(body.details.redis.error, "the error is reported");
      assert.equal(body.components.firestore, "up");
      // No hang on reconnects: bounded by the 1.5 s component timeout plus overhead, never the 20 s client timeout.
      assert.ok(ms < 10_000, `answered in ${Math.round(ms)} ms`);
    }
    // The breaker opens after repeated failures: later answers report it rather than waiting on a connect.
    assert.match(answers[2].body.details.redis.error ?? "", /circuit open|reconnecting|refused|not connected|closed/);
  });

  it("when Redis comes back, then health returns to ok", async () => {
    await control("redis/start");
    const { body } = await waitFor(
      "health ok again",
      async () => {
        const answer = await health();
        return answer.body.status === "ok" ? answer : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    assert.equal(body.components.redis, "up");
  });
});
