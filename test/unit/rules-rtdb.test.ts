/** Realtime Database rules, evaluated offline with targaryen (the same rules file the emulator and deploy use). */
import assert from "node:assert/strict";
import targaryen from "targaryen";

const rules = require("../../database.rules.json") as object;
const alice = { uid: "alice" };
const mallory = { uid: "mallory" };
const op = { type: "spend", feature: "chat.message", quantity: 2, created_at: 1_700_000_000_000 };

function database(data: object = {}) {
  return targaryen.database(rules, data).with({ debug: true });
}

describe("unit: RTDB rules", () => {
  it("when the owner queues a well-formed spend, then the write is allowed", () => {
    assert.equal(database().as(alice).write("/operation_queues/alice/op1", op).allowed, true);
  });

  it("when the entry carries flat metadata (short keys; strings up to 500 characters, numbers, booleans), then it is allowed", () => {
    const metadata = { session_id: "s-1", note: "x".repeat(500), tokens: 12, draft: false };
    assert.equal(
      database()
        .as(alice)
        .write("/operation_queues/alice/op1", { ...op, metadata }).allowed,
      true,
    );
  });

  it("when someone queues into another user's queue or unauthenticated, then it is denied", () => {
    assert.equal(database().as(mallory).write("/operation_queues/alice/op1", op).allowed, false);
    assert.equal(database().as(null).write("/operation_queues/alice/op1", op).allowed, false);
  });

  it("when an entry exists, then the owner cannot overwrite, update or delete it (write-once)", () => {
    const db = database({ operation_queues: { alice: { op1: op } } });
    assert.equal(db.as(alice).write("/operation_queues/alice/op1", { ...op, quantity: 1 }).allowed, false);
    assert.equal(db.as(alice).update("/operation_queues/alice/op1", { quantity: 1 }).allowed, false);
    assert.equal(db.as(alice).write("/operation_queues/alice/op1", null).allowed, false);
  });

  const malformed: Array<[string, object]> = [
    ["a client-written status", { ...op, status: "applied" }],
    ["a client-written result", { ...op, result: { balance: 1e9 } }],
    ["an unknown type", { ...op, type: "grant" }],
    ["a fractional quantity", { ...op, quantity: 1.5 }],
    ["a negative quantity", { ...op, quantity: -1 }],
    ["a string quantity", { ...op, quantity: "2" }],
    ["an extra field", { ...op, amount: 5 }],
    ["a missing feature", { type: "spend", quantity: 1, created_at: 1 }],
    ["nested metadata", { ...op, metadata: { a: { b: { c: "deep" } } } }],
    ["metadata holding a list", { ...op, metadata: { tags: ["a", "b"] } }],
    ["a metadata value over 500 characters", { ...op, metadata: { note: "x".repeat(501) } }],
    ["a metadata key over 64 characters", { ...op, metadata: { ["k".repeat(65)]: 1 } }],
    ["a metadata key with other characters", { ...op, metadata: { "a b": 1 } }],
    ["metadata that is not an object", { ...op, metadata: "free text" }],
  ];
  for (const [name, value] of malformed) {
    it(`when the entry has ${name}, then it is refused`, () => {
      assert.equal(database().as(alice).write("/operation_queues/alice/op1", value).allowed, false);
    });
  }

  it("when a client writes user_balances or job_progress, then it is denied; reads are owner-only", () => {
    const db = database({
      user_balances: { alice: { balance: 5 } },
      job_progress: { j1: { user_id: "alice", pct: 10 } },
    });
    assert.equal(db.as(alice).write("/user_balances/alice", { balance: 1e9 }).allowed, false);
    assert.equal(db.as(alice).write("/job_progress/j1/pct", 100).allowed, false);
    assert.equal(db.as(alice).read("/user_balances/alice").allowed, true);
    assert.equal(db.as(mallory).read("/user_balances/alice").allowed, false);
    assert.equal(db.as(alice).read("/job_progress/j1").allowed, true);
    assert.equal(db.as(mallory).read("/job_progress/j1").allowed, false);
    assert.equal(db.as(alice).read("/user_balances").allowed, false, "no listing of all balances");
  });
});
