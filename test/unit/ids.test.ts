/** Pure tests of the id and bounded-map schemas (shared/ids.ts) and of every input schema that uses them. */
import assert from "node:assert/strict";
import { AdjustInput, GrantInput, MeterInput, RefundInput, SpendInput } from "../../functions/src/credits/schemas";
import { CreateJobInput, JobIdInput, JobReport } from "../../functions/src/jobs/schemas";
import { AcknowledgeAlertInput, RouteTaskInput } from "../../functions/src/routing/schemas";
import { CreateSessionInput } from "../../functions/src/sessions/schemas";
import { rejectPrototypeKeys } from "../../functions/src/shared/callable";
import { InvalidInput } from "../../functions/src/shared/errors";
import { boundedMap, documentId, MAX_MAP_BYTES } from "../../functions/src/shared/ids";

/** Every form of id Firestore refuses as a document id. */
const BAD_IDS: Array<[string, string]> = [
  ["a/b", "slash"],
  [".", "dot"],
  ["..", "dot-dot"],
  ["__x__", "reserved"],
  ["____", "reserved, empty middle"],
  ["", "empty"],
  ["x".repeat(1501), "over 1,500 bytes"],
  ["é".repeat(751), "over 1,500 bytes in UTF-8"],
  ["a\uD800b", "lone surrogate"],
];

/** `{a: {a: … {a: 1}}}`, built without recursion. */
function nested(depth: number): Record<string, unknown> {
  let value: Record<string, unknown> = { a: 1 };
  for (let i = 0; i < depth; i++) value = { a: value };
  return value;
}

describe("unit: id and bounded-map schemas", () => {
  it("when an id breaks a Firestore document-id rule, then documentId refuses it; ordinary ids pass", () => {
    const id = documentId();
    for (const [bad, why] of BAD_IDS) assert.equal(id.safeParse(bad).success, false, why);
    for (const good of ["u1", "a.b", "_x_", "__x", "x__", "...", "é".repeat(750), "user-123_v4"])
      assert.ok(id.safeParse(good).success, good);
  });

  it("when a narrower pattern or length is given, then both it and the Firestore rules apply", () => {
    const id = documentId({ max: 8, pattern: { regex: /^[a-z_]+$/, message: "lowercase" } });
    assert.ok(id.safeParse("abc").success);
    assert.equal(id.safeParse("__ab__").success, false, "reserved even though the pattern allows it");
    assert.equal(id.safeParse("ABC").success, false);
    assert.equal(id.safeParse("abcdefghi").success, false);
  });

  it("when every id field of every input gets a bad id, then the input is refused at that field", () => {
    const cases: Array<{
      schema: { safeParse(v: unknown): { success: boolean; error?: { issues: Array<{ path: PropertyKey[] }> } } };
      valid: Record<string, unknown>;
      field: string;
    }> = [
      { schema: GrantInput, valid: { user_id: "u", amount: 1, reason: "r", idempotency_key: "k" }, field: "user_id" },
      { schema: AdjustInput, valid: { user_id: "u", amount: 1, reason: "r", idempotency_key: "k" }, field: "user_id" },
      {
        schema: MeterInput,
        valid: { user_id: "u", feature: "chat.message", quantity: 1, idempotency_key: "k" },
        field: "user_id",
      },
      {
        schema: RefundInput,
        valid: { transaction_id: "u_v1", reason: "r", idempotency_key: "k" },
        field: "transaction_id",
      },
      { schema: JobIdInput, valid: { job_id: "j1" }, field: "job_id" },
      { schema: JobReport, valid: { kind: "failed", job_id: "j1", report_id: "r1", error: "e" }, field: "job_id" },
      { schema: JobReport, valid: { kind: "failed", job_id: "j1", report_id: "r1", error: "e" }, field: "report_id" },
      { schema: AcknowledgeAlertInput, valid: { alert_id: "a1" }, field: "alert_id" },
      { schema: RouteTaskInput, valid: { task_type: "t", job_id: "j1" }, field: "job_id" },
    ];
    for (const { schema, valid, field } of cases) {
      assert.ok(schema.safeParse(valid).success, `${field}: the valid input passes`);
      for (const [bad, why] of BAD_IDS) {
        const result = schema.safeParse({ ...valid, [field]: bad });
        assert.equal(result.success, false, `${field} ${why}`);
        assert.ok(
          result.error?.issues.some((issue) => issue.path[0] === field),
          `${field} ${why}: issue at the field`,
        );
      }
    }
  });

  it("when a stored map has an empty, reserved or prototype key at any level, then it is refused with the key's path", () => {
    const map = boundedMap();
    assert.ok(map.safeParse({ a: 1, b: { c: [1, "x", null, { d: true }] } }).success);
    for (const key of ["", "__x__", "__proto__", "constructor", "k".repeat(129)]) {
      const top = map.safeParse(JSON.parse(JSON.stringify({ [key]: 1 })) as unknown);
      assert.equal(top.success, false, `top-level ${JSON.stringify(key).slice(0, 12)}`);
      const deep = map.safeParse({ a: { b: [{ [key]: 1 }] } });
      assert.equal(deep.success, false, `nested ${JSON.stringify(key).slice(0, 12)}`);
      if (key !== "__proto__") assert.deepEqual(deep.error?.issues[0]?.path, ["a", "b", 0, key]);
    }
  });

  it("when a map is nested too deep (even 20,000 levels), then it is refused quickly without overflowing the stack", () => {
    const map = boundedMap({ maxDepth: 4 });
    assert.ok(map.safeParse({ a: { b: { c: { d: 1 } } } }).success, "four levels");
    assert.equal(map.safeParse({ a: { b: { c: { d: { e: 1 } } } } }).success, false, "five levels");
    assert.equal(map.safeParse({ a: [[[[1]]]] }).success, false, "arrays count as levels");
    const deep = boundedMap().safeParse(nested(20_000));
    assert.equal(deep.success, false);
    assert.match(deep.error?.issues[0]?.message ?? "", /nested deeper/);
  });

  it("when a map is larger than its byte bound or holds non-JSON values, then it is refused", () => {
    assert.ok(boundedMap().safeParse({ text: "x".repeat(MAX_MAP_BYTES - 100) }).success);
    assert.equal(boundedMap().safeParse({ text: "x".repeat(MAX_MAP_BYTES) }).success, false);
    assert.equal(boundedMap({ maxBytes: 10 }).safeParse({ text: "0123456789" }).success, false);
    assert.equal(boundedMap().safeParse({ n: Number.NaN }).success, false);
    assert.equal(boundedMap().safeParse({ f: () => 1 }).success, false);
  });

  it("when free-form fields (outputs, metadata, job input, session data) get an empty key or deep nesting, then the input is refused", () => {
    const report = { kind: "succeeded", job_id: "j1", report_id: "r1", cost: 1 };
    assert.ok(JobReport.safeParse({ ...report, outputs: { url: "gs://b/o" } }).success);
    assert.equal(JobReport.safeParse({ ...report, outputs: { "": "x" } }).success, false, "empty output key");
    assert.equal(JobReport.safeParse({ ...report, outputs: { __x__: "x" } }).success, false, "reserved output key");
    const spend = { feature: "chat.message", quantity: 1, idempotency_key: "k" };
    assert.equal(SpendInput.safeParse({ ...spend, metadata: { "": "x" } }).success, false, "empty metadata key");
    const job = { type: "report", idempotency_key: "job-12345" };
    assert.ok(CreateJobInput.safeParse({ ...job, input: { subject: "s", pages: 1 } }).success);
    assert.equal(CreateJobInput.safeParse({ ...job, input: { "": 1 } }).success, false, "empty job input key");
    assert.equal(CreateJobInput.safeParse({ ...job, input: nested(20_000) }).success, false, "deep job input");
    assert.equal(
      CreateSessionInput.safeParse({ name: "n", session_data: nested(20_000) }).success,
      false,
      "deep session data",
    );
    assert.equal(
      CreateSessionInput.safeParse({ name: "n", session_data: { "": 1 } }).success,
      false,
      "empty session data key",
    );
  });

  it("when a raw body is nested 20,000 deep or carries a prototype key, then rejectPrototypeKeys throws InvalidInput, not RangeError", () => {
    assert.throws(
      () => rejectPrototypeKeys({ data: nested(20_000) }),
      (error: unknown) => error instanceof InvalidInput && /nested deeper/.test(error.message),
    );
    assert.throws(
      () => rejectPrototypeKeys(JSON.parse('{"data":{"a":[{"__proto__":{"admin":true}}]}}')),
      (error: unknown) => error instanceof InvalidInput && /a\.0\.__proto__: reserved key/.test(error.message),
    );
    assert.doesNotThrow(() => rejectPrototypeKeys({ data: nested(10) }));
  });
});
