/** Pure parts of jobs: the registry's schemas and prices, report schemas, stream entry encoding. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { JOB_TYPES, jobType, PodcastInput, streamTypes } from "../../functions/src/jobs/registry";
import { CreateJobInput, JobReport } from "../../functions/src/jobs/schemas";
import { fieldsOf, parseFields } from "../../functions/src/jobs/streams";

describe("unit: job registry and schemas", () => {
  it("when a podcast topic is 1–500 characters and the duration bounded, then it parses; otherwise it is refused", () => {
    assert.ok(PodcastInput.safeParse({ topic: "a", duration_min: 1 }).success);
    assert.ok(PodcastInput.safeParse({ topic: "a".repeat(500), duration_min: 60 }).success);
    assert.equal(PodcastInput.safeParse({ topic: "", duration_min: 5 }).success, false);
    assert.equal(PodcastInput.safeParse({ topic: "a".repeat(501), duration_min: 5 }).success, false);
    assert.equal(PodcastInput.safeParse({ topic: "a", duration_min: 61 }).success, false);
    assert.equal(PodcastInput.safeParse({ topic: "a", duration_min: 2.5 }).success, false);
    assert.equal(
      PodcastInput.safeParse({ topic: "a", duration_min: 5, price: 0 }).success,
      false,
      "unknown fields are refused",
    );
  });

  it("when any valid input is priced, then the price is a positive whole number of credits", () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 500 }).filter((topic) => topic.trim().length > 0),
        fc.integer({ min: 1, max: 60 }),
        (topic, duration) => {
          const type = jobType("podcast")!;
          const price = type.price(type.input.parse({ topic, duration_min: duration }));
          return Number.isSafeInteger(price) && price === 5 * duration;
        },
      ),
    );
  });

  it("when the registry is read, then every type has a schema, a dispatch target and a deadline, and streams are named jobs:{type}", () => {
    for (const type of Object.values(JOB_TYPES)) {
      assert.ok(type.deadlineMs > 0);
      assert.ok(
        type.dispatch.kind === "pubsub"
          ? type.dispatch.topic.length >= 3
          : type.dispatch.stream === `jobs:${type.name}`,
      );
    }
    assert.deepEqual(streamTypes(), [{ type: "podcast", stream: "jobs:podcast" }]);
    assert.equal(jobType("__proto__"), undefined);
  });

  it("when a createJob request or a report has unknown fields or an unknown kind, then it is refused", () => {
    assert.equal(
      CreateJobInput.safeParse({ type: "podcast", input: {}, idempotency_key: "key-12345", user_id: "x" }).success,
      false,
    );
    assert.equal(CreateJobInput.safeParse({ type: "movie", input: {}, idempotency_key: "key-12345" }).success, false);
    assert.ok(JobReport.safeParse({ kind: "progress", job_id: "j1", report_id: "p1", stage: "s", pct: 10 }).success);
    assert.equal(
      JobReport.safeParse({ kind: "progress", job_id: "j1", report_id: "p1", stage: "s", pct: 101 }).success,
      false,
    );
    assert.equal(
      JobReport.safeParse({ kind: "succeeded", job_id: "j1", report_id: "f", cost: 1.5, outputs: {} }).success,
      false,
    );
    assert.equal(JobReport.safeParse({ kind: "refund", job_id: "j1", report_id: "f" }).success, false);
  });

  it("when a stream entry is encoded and decoded, then the job comes back unchanged", () => {
    fc.assert(
      fc.property(
        fc.string(),
        fc.string(),
        fc.string(),
        fc.string(),
        fc.integer({ min: 1, max: 100 }),
        (jobId, type, userId, input, attempt) => {
          const job = { job_id: jobId, type, user_id: userId, input, attempt };
          assert.deepEqual(parseFields(fieldsOf(job)), job);
        },
      ),
    );
  });
});
