/** The refund and dispute rules (payments/corrections.ts) as pure functions: what each piece of knowledge owes. */
import assert from "node:assert/strict";
import {
  correctionDue,
  creditsLost,
  learn,
  type Corrections,
  type Report,
} from "../../functions/src/payments/corrections";

const pack = { credits: 100, amount: 500 };
const none: Corrections = { refundedAmount: 0, disputes: {}, clawedBack: 0, reinstated: 0 };

/** Applies reports in order as the webhook does: learn, then post what is due. */
function run(reports: Report[]): { known: Corrections; entries: number[] } {
  let known = none;
  const entries: number[] = [];
  for (const report of reports) {
    known = learn(known, report);
    const due = correctionDue(pack, known);
    if (due < 0) known = { ...known, clawedBack: known.clawedBack - due };
    if (due > 0) known = { ...known, reinstated: known.reinstated + due };
    if (due !== 0) entries.push(due);
  }
  return { known, entries };
}

const refund = (amountRefunded: number): Report => ({ kind: "refund", amountRefunded });
const withdrawn: Report = { kind: "dispute", disputeId: "dp_1", state: "withdrawn" };
const reinstated: Report = { kind: "dispute", disputeId: "dp_1", state: "reinstated" };

describe("unit: payments — refund and dispute rules", () => {
  it("when refunded in steps, then each takes the floor of its cumulative share, and all of them the whole pack", () => {
    assert.deepEqual(run([refund(123), refund(301), refund(500)]).entries, [-24, -36, -40]);
  });

  it("when a smaller cumulative amount arrives late, then nothing is owed", () => {
    assert.deepEqual(run([refund(300), refund(100)]).entries, [-60]);
    assert.equal(creditsLost(pack, learn(learn(none, refund(300)), refund(100))), 60);
  });

  it("when a dispute is withdrawn and then won, then it takes what remains and gives exactly that back", () => {
    assert.deepEqual(run([refund(100), withdrawn, reinstated]).entries, [-20, -80, 80]);
  });

  it("when the reinstatement is known first, then the late withdrawal moves nothing", () => {
    assert.deepEqual(run([reinstated, withdrawn]).entries, []);
    assert.deepEqual(learn(learn(none, reinstated), withdrawn).disputes, { dp_1: "reinstated" });
  });

  it("when the same reports come in any order, then the credits lost are the same", () => {
    const reports = [refund(250), withdrawn, refund(400), reinstated];
    const orders = [reports, [...reports].reverse(), [reports[2], reports[3], reports[0], reports[1]]];
    for (const order of orders) {
      const { known } = run(order);
      assert.equal(known.clawedBack - known.reinstated, 80);
    }
  });

  it("when more is refunded than the payment's amount, then no more than the pack is lost", () => {
    assert.equal(creditsLost(pack, learn(none, refund(9_999))), 100);
  });
});
