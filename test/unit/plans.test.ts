import assert from "node:assert/strict";
import { DEFAULT_PLANS, periodOf } from "../../functions/src/credits/plans";
import { PlansConfig, SetPlanInput } from "../../functions/src/credits/schemas";

describe("unit: plans", () => {
  it("when a period is asked for, then it is the calendar month in UTC, whatever the local offset of the moment", () => {
    assert.deepEqual(periodOf(new Date("2031-12-31T23:59:59.999Z")), {
      id: "2031-12",
      start: new Date("2031-12-01T00:00:00Z"),
      end: new Date("2032-01-01T00:00:00Z"),
    });
    assert.equal(periodOf(new Date("2032-01-01T00:00:00Z")).id, "2032-01");
    assert.equal(periodOf(new Date("2032-02-29T12:00:00+14:00")).id, "2032-02");
    assert.deepEqual(periodOf(new Date("2032-02-10T00:00:00Z")).end, new Date("2032-03-01T00:00:00Z"));
  });

  it("when config/plans is parsed, then the defaults are valid and bad plans are refused", () => {
    assert.deepEqual(PlansConfig.parse(DEFAULT_PLANS), DEFAULT_PLANS);
    assert.deepEqual(PlansConfig.parse({ plans: { team: { monthly_allowance: 10 } } }), {
      plans: { team: { monthly_allowance: 10, rollover: "none" } },
    });
    for (const bad of [
      { plans: {} },
      { plans: { free: { monthly_allowance: -1 } } },
      { plans: { free: { monthly_allowance: 1.5 } } },
      { plans: { free: { monthly_allowance: 5, allowance_priority: 101 } } },
      { plans: { free: { monthly_allowance: 5, rollover: "all" } } },
      { plans: { free: { monthly_allowance: 5, rollover: { max: -2 } } } },
      { plans: { Free: { monthly_allowance: 5 } } },
      { plans: { free: { monthly_allowance: 5, extra: true } } },
    ])
      assert.equal(PlansConfig.safeParse(bad).success, false, JSON.stringify(bad));
  });

  it("when setPlan's input has an unknown field or a bad tier, then it is refused", () => {
    assert.equal(SetPlanInput.safeParse({ user_id: "u", tier: "pro", idempotency_key: "k" }).success, true);
    assert.equal(SetPlanInput.safeParse({ user_id: "u", tier: "pro", idempotency_key: "k", x: 1 }).success, false);
    assert.equal(SetPlanInput.safeParse({ user_id: "u", tier: "Pro Plan", idempotency_key: "k" }).success, false);
  });
});
