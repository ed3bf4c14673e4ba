/** Auto top-up's decision (credits/topup.ts topUpDue), pure. */
import assert from "node:assert/strict";
import { monthOf, topUpDue, type AutoTopUpState } from "../../functions/src/credits/topup";

const DEC = Date.UTC(2026, 11, 10);
const JAN = Date.UTC(2027, 0, 1, 0, 0, 1);

const state = (overrides: Partial<AutoTopUpState> = {}): AutoTopUpState => ({
  enabled: true,
  threshold: 50,
  pack_id: "starter",
  monthly_cap: 250,
  credits: 100,
  amount: 500,
  currency: "usd",
  expires_after_days: null,
  priority: null,
  pending_topup_id: null,
  month: "2026-12",
  month_credits: 0,
  consecutive_failures: 0,
  disabled_reason: null,
  ...overrides,
});

const due = (auto: AutoTopUpState | undefined, before: number, after: number, now = DEC, type = "spend" as const) =>
  topUpDue(
    auto ? { auto_topup: auto } : {},
    { type, uid: "u1", version: 7, transactionId: "u1_v7" },
    before,
    after,
    now,
  );

describe("unit: auto top-up decision", () => {
  it("when a change lowers available credits below the threshold, then a top-up named by the version is due", () => {
    const result = due(state(), 60, 45);
    assert.equal(result?.id, "u1_7");
    assert.deepEqual(
      [result?.topUp.status, result?.topUp.credits, result?.topUp.month, result?.topUp.available_after],
      ["pending", 100, "2026-12", 45],
    );
    assert.deepEqual([result?.state.pending_topup_id, result?.state.month_credits], ["u1_7", 100]);
  });

  it("when the change does not lower available credits, or leaves them at the threshold, then none", () => {
    assert.equal(due(state(), 40, 45), null);
    assert.equal(due(state(), 60, 50), null);
    assert.equal(due(state(), 40, 40), null);
  });

  it("when auto top-up is off, unset, pending, or the change is a clawback, then none", () => {
    assert.equal(due(state({ enabled: false }), 60, 10), null);
    assert.equal(due(undefined, 60, 10), null);
    assert.equal(due(state({ pending_topup_id: "u1_3" }), 60, 10), null);
    assert.equal(
      topUpDue({ auto_topup: state() }, { type: "clawback", uid: "u1", version: 7, transactionId: "x" }, 60, 10, DEC),
      null,
    );
  });

  it("when the pack would pass the month's cap, then none; a new month starts from zero", () => {
    assert.ok(due(state({ month_credits: 150 }), 60, 10));
    assert.equal(due(state({ month_credits: 151 }), 60, 10), null);
    const next = due(state({ month_credits: 250 }), 60, 10, JAN);
    assert.deepEqual([next?.state.month, next?.state.month_credits], ["2027-01", 100]);
  });

  it("monthOf is the UTC calendar month", () => {
    assert.equal(monthOf(Date.UTC(2026, 11, 31, 23, 59, 59)), "2026-12");
    assert.equal(monthOf(Date.UTC(2027, 0, 1)), "2027-01");
  });
});
