/** The audit trail's actor rule (audit/record.ts actorOf), on plain before/after data. */
import assert from "node:assert/strict";
import { actorOf, UNKNOWN_ACTOR } from "../../functions/src/audit/record";

const at = (seconds: number, nanoseconds = 0) => ({
  seconds,
  nanoseconds,
  toDate: () => new Date(seconds * 1000 + nanoseconds / 1e6),
});
const granted = { credits_balance: 100, ledger_version: 1, updated_by: "admin:alice", updated_at: at(1_700_000_000) };

describe("unit: audit actor", () => {
  it("when a server write sets updated_by with a new updated_at, then the actor is that updated_by", () => {
    assert.equal(actorOf({ after: granted }), "admin:alice", "create");
    const spend = {
      ...granted,
      credits_balance: 90,
      ledger_version: 2,
      updated_by: "user:bob",
      updated_at: at(1_700_000_000, 1000),
    };
    assert.equal(actorOf({ before: granted, after: spend }), "user:bob", "a marker moved by a microsecond counts");
  });

  it("when a write leaves updated_at as it was (a console edit), then the actor is unknown, not the previous writer", () => {
    assert.equal(actorOf({ before: granted, after: { ...granted, credits_balance: 1_000_000 } }), UNKNOWN_ACTOR);
  });

  it("when a write carries no updated_by or updated_at, or deletes the document, then the actor is unknown", () => {
    assert.equal(actorOf({ after: { credits_balance: 5 } }), UNKNOWN_ACTOR);
    assert.equal(actorOf({ after: { credits_balance: 5, updated_by: "admin:alice" } }), UNKNOWN_ACTOR);
    assert.equal(actorOf({ before: granted, after: undefined }), UNKNOWN_ACTOR);
  });
});
