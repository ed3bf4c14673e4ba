/**
 * Hostile input end to end through the functions emulator (invariant 8): ids
 * Firestore refuses, bodies nested 20,000 deep, and worker reports with an
 * empty output key are answered invalid-argument (HTTP 400) with field-level
 * details and write nothing; over Pub/Sub the malformed report is acked and
 * dead-lettered with a reason, never retried.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { pubsub } from "../../functions/src/adapters/pubsub";
import { db, footprint, fund } from "../support/credits";
import { jobDoc, postReport } from "../support/jobs";
import { callFunction, emulatorIdToken, env, newUid, suite, waitFor } from "../support/suite";

/** Every form of id Firestore refuses as a document id. */
const BAD_IDS = ["a/b", ".", "..", "__x__", "", "x".repeat(1501)];

/** `{"a":{"a":…{"a":1}…}}` as JSON text, built as a string: JSON.stringify itself would overflow the stack. */
function nestedJson(depth: number): string {
  return `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

/** POSTs raw JSON text to a function, as a hostile client would. */
async function postRaw(
  name: string,
  body: string,
  authorization: string,
): Promise<{ status: number; error?: { status: string; message: string; details?: unknown } }> {
  const response = await fetch(`${suite.functionsBaseUrl}/${name}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization },
    body,
    signal: AbortSignal.timeout(60_000),
  });
  const text = await response.text();
  let error: { status: string; message: string; details?: unknown } | undefined;
  try {
    error = (JSON.parse(text) as { error?: typeof error }).error;
  } catch {
    error = { status: "not JSON", message: text.slice(0, 200) };
  }
  return { status: response.status, error };
}

interface Issue {
  path: string;
}

function issuePaths(details: unknown): string[] {
  return ((details as { issues?: Issue[] } | undefined)?.issues ?? []).map((issue) => issue.path);
}

async function queuedJob(uid: string): Promise<string> {
  const answer = await callFunction<{ job_id: string }>(
    "createJob",
    { type: "report", input: { subject: "Hostile", pages: 2 }, idempotency_key: `job-${randomUUID()}` },
    { uid },
  );
  assert.ok(answer.result, JSON.stringify(answer.error));
  return answer.result.job_id;
}

/** What a report could change on a job. */
async function jobState(jobId: string): Promise<string> {
  const job = await jobDoc(jobId);
  return JSON.stringify({
    status: job.status,
    version: job.version,
    progress: job.progress ?? null,
    outputs: job.outputs ?? null,
    cost: job.cost ?? null,
  });
}

describe("e2e: hostile input", function () {
  this.timeout(600_000);
  const admin = { uid: "hostile-admin", claims: { admin: true } };

  // On a busy machine the emulator's cold load of a function can exceed its 30 s limit, and the request then hangs
  // (see credits.test.ts): load each function once, one at a time, before the tests, retrying a load that failed.
  before(async () => {
    for (const name of [
      "grantCredits",
      "adjustCredits",
      "refundCredits",
      "cancelJob",
      "acknowledgeAlert",
      "spendCredits",
      "createJob",
    ]) {
      const answer = await waitFor(
        `${name} loaded`,
        () => callFunction(name, { warm: "up" }, admin, { timeoutMs: 45_000 }),
        { timeoutMs: 240_000, intervalMs: 1000 },
      );
      assert.equal(answer.error?.status, "INVALID_ARGUMENT", `${name}: ${JSON.stringify(answer)}`);
    }
  });

  it("when callables get ids with '/', '.', '..', '__x__', empty or over 1,500 bytes, then invalid-argument naming the field and nothing written", async () => {
    const uid = newUid("hostile");
    await fund(uid, 1000);
    const before = await footprint(uid);
    for (const id of BAD_IDS) {
      const cases: Array<{
        name: string;
        data: Record<string, unknown>;
        auth: { uid: string; claims?: Record<string, unknown> };
        field: string;
      }> = [
        {
          name: "grantCredits",
          data: { user_id: id, amount: 5, reason: "hostile", idempotency_key: `g-${randomUUID()}` },
          auth: admin,
          field: "user_id",
        },
        {
          name: "adjustCredits",
          data: { user_id: id, amount: -5, reason: "hostile", idempotency_key: `a-${randomUUID()}` },
          auth: admin,
          field: "user_id",
        },
        {
          name: "refundCredits",
          data: { transaction_id: id, reason: "hostile", idempotency_key: `r-${randomUUID()}` },
          auth: admin,
          field: "transaction_id",
        },
        { name: "cancelJob", data: { job_id: id }, auth: { uid }, field: "job_id" },
        { name: "acknowledgeAlert", data: { alert_id: id }, auth: admin, field: "alert_id" },
      ];
      for (const { name, data, auth, field } of cases) {
        const answer = await callFunction(name, data, auth);
        assert.equal(
          answer.error?.status,
          "INVALID_ARGUMENT",
          `${name}(${JSON.stringify(id).slice(0, 20)}): ${JSON.stringify(answer.error)}`,
        );
        assert.ok(
          issuePaths(answer.error?.details).includes(field),
          `${name}: details name ${field}: ${JSON.stringify(answer.error?.details)}`,
        );
      }
    }
    assert.equal(await footprint(uid), before);
    const strays = await db().collection("credit_transactions").where("user_id", "in", ["__x__", ".", ".."]).get();
    assert.equal(strays.size, 0, "no ledger entry for a refused id");
  });

  it("when a free-form map has an empty key or a reserved __x__ key, then invalid-argument and nothing written", async () => {
    const uid = newUid("hostile");
    await fund(uid, 1000);
    const before = await footprint(uid);
    for (const key of ["", "__x__"]) {
      const spend = await callFunction(
        "spendCredits",
        { feature: "chat.message", quantity: 1, idempotency_key: `s-${randomUUID()}`, metadata: { [key]: "v" } },
        { uid },
      );
      assert.equal(spend.error?.status, "INVALID_ARGUMENT", JSON.stringify(spend.error));
      const job = await callFunction(
        "createJob",
        { type: "report", input: { subject: "x", pages: 1, [key]: 1 }, idempotency_key: `job-${randomUUID()}` },
        { uid },
      );
      assert.equal(job.error?.status, "INVALID_ARGUMENT", JSON.stringify(job.error));
    }
    assert.equal(await footprint(uid), before);
    assert.equal((await db().collection("jobs").where("user_id", "==", uid).get()).size, 0);
  });

  it("when a body is nested 20,000 levels deep, then callables answer invalid-argument and jobReport 400, and nothing is written", async () => {
    const uid = newUid("hostile");
    await fund(uid, 1000);
    const before = await footprint(uid);
    const deep = nestedJson(20_000);
    const bearer = `Bearer ${emulatorIdToken(uid)}`;
    const calls = [
      postRaw(
        "spendCredits",
        `{"data":{"feature":"chat.message","quantity":1,"idempotency_key":"s-${randomUUID()}","metadata":${deep}}}`,
        bearer,
      ),
      postRaw(
        "createJob",
        `{"data":{"type":"report","input":${deep},"idempotency_key":"job-${randomUUID()}"}}`,
        bearer,
      ),
      postRaw("spendCredits", `{"data":${deep}}`, bearer),
    ];
    for (const answer of await Promise.all(calls)) {
      assert.equal(answer.error?.status, "INVALID_ARGUMENT", JSON.stringify(answer));
    }
    assert.equal(await footprint(uid), before);
    const jobId = await queuedJob(uid);
    const beforeJob = await jobState(jobId);
    const report = await postRaw(
      "jobReport",
      `{"kind":"succeeded","job_id":"${jobId}","report_id":"deep","cost":1,"outputs":${deep}}`,
      `Bearer ${env("WORKER_API_KEY")}`,
    );
    assert.equal(report.status, 400, JSON.stringify(report));
    assert.equal(report.error?.status, "invalid-argument");
    assert.equal(await jobState(jobId), beforeJob);
    assert.equal(
      (await db().collection("jobs").where("user_id", "==", uid).get()).size,
      1,
      "only the valid job exists",
    );
  });

  it("when a worker reports an empty output key over HTTPS, then 400 with field details and the job is unchanged", async () => {
    const uid = newUid("hostile");
    await fund(uid, 1000);
    const jobId = await queuedJob(uid);
    const before = await jobState(jobId);
    const report = await postReport({
      kind: "succeeded",
      job_id: jobId,
      report_id: "empty-key",
      cost: 1,
      outputs: { "": "x" },
    });
    assert.equal(report.status, 400, JSON.stringify(report.json));
    const error = report.json.error;
    assert.equal(error?.status, "invalid-argument");
    assert.ok(
      issuePaths(error?.details).some((path) => path.startsWith("outputs")),
      JSON.stringify(error?.details),
    );
    assert.equal(await jobState(jobId), before);
  });

  it("when a worker publishes a report with an empty output key, then it is dead-lettered with a reason, acked, and the job is unchanged", async () => {
    const uid = newUid("hostile");
    await fund(uid, 1000);
    const jobId = await queuedJob(uid);
    const before = await jobState(jobId);
    const messageId = await pubsub()
      .topic("job-results")
      .publishMessage({
        json: { kind: "succeeded", job_id: jobId, report_id: "empty-key", cost: 1, outputs: { "": "x" } },
      });
    const dead = await waitFor(
      "malformed report dead-lettered",
      async () => (await db().collection("dead_letters").doc(`job-report:${messageId}`).get()).data(),
      { timeoutMs: 60_000 },
    );
    assert.equal(dead.consumer, "job-report");
    assert.equal(dead.topic, "job-results");
    assert.equal(dead.message_id, messageId);
    assert.equal(dead.job_id, jobId);
    assert.match(String(dead.error), /outputs/);
    assert.equal(dead.transient, false);
    assert.equal(await jobState(jobId), before);
    // A valid report afterwards still applies: the consumer acked the bad one and moved on.
    await pubsub()
      .topic("job-results")
      .publishMessage({ json: { kind: "failed", job_id: jobId, report_id: "final", error: "gave up" } });
    await waitFor("valid report applied", async () => (await jobDoc(jobId)).status === "failed", { timeoutMs: 60_000 });
  });
});
