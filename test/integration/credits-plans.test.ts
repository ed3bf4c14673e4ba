/** Plans and monthly allowances (issue 12), against the Firestore emulator through the credits use cases. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { grantAllowances } from "../../functions/src/credits/allowances";
import { spendCredits } from "../../functions/src/credits/operations";
import { DEFAULT_PLANS, grantUserAllowance, loadPlans, setPlan } from "../../functions/src/credits/plans";
import type { PlansConfig } from "../../functions/src/credits/schemas";
import type { Clock } from "../../functions/src/shared/time";
import { assertLedgerInvariants, db, fund, ledgerOf, lotsOf } from "../support/credits";
import { newUid } from "../support/suite";

const at = (iso: string): Clock => ({ now: () => new Date(iso) });

async function user(uid: string): Promise<Record<string, unknown>> {
  return (await db().collection("users").doc(uid).get()).data() ?? {};
}

async function allowanceLots(uid: string) {
  return (await lotsOf(uid))
    .filter((lot) => lot.source === "allowance")
    .map((lot) => ({
      amount: lot.amount,
      remaining: lot.remaining,
      status: lot.status,
      expires_at: (lot.expires_at as { toDate(): Date }).toDate().toISOString(),
    }));
}

const plan = (key = randomUUID()) => ({ idempotency_key: `plan-${key}` });

describe("integration: plans and allowances", function () {
  this.timeout(180_000);

  it("when config/plans is missing or invalid, then the defaults are used; a valid one is used as it is", async () => {
    const ref = db().collection("config").doc("plans");
    await ref.delete();
    assert.deepEqual(await loadPlans(db()), DEFAULT_PLANS);
    await ref.set({ plans: { free: { monthly_allowance: -5 } } });
    assert.deepEqual(await loadPlans(db()), DEFAULT_PLANS);
    await ref.set({ plans: { team: { monthly_allowance: 700, allowance_priority: 5, rollover: { max: 100 } } } });
    assert.deepEqual(await loadPlans(db()), {
      plans: { team: { monthly_allowance: 700, allowance_priority: 5, rollover: { max: 100 } } },
    });
    await ref.delete();
  });

  it("when an admin sets a plan, then the tier is written and the period's allowance granted at once, expiring at the month's end (UTC)", async () => {
    const uid = newUid();
    const clock = at("2031-03-17T10:00:00Z");
    const key = plan();
    const answer = await setPlan({ db: db(), clock }, "admin", { user_id: uid, tier: "pro", ...key });
    assert.deepEqual(answer, {
      user_id: uid,
      tier: "pro",
      period_start: "2031-03-01T00:00:00.000Z",
      period_end: "2031-04-01T00:00:00.000Z",
      replayed: false,
    });
    assert.deepEqual(await allowanceLots(uid), [
      { amount: 2000, remaining: 2000, status: "active", expires_at: "2031-04-01T00:00:00.000Z" },
    ]);
    const doc = await user(uid);
    assert.deepEqual([doc.tier, doc.allowance_period], ["pro", "2031-03"]);
    const record = (await db().collection("credit_allowances").doc(`allowance:${uid}:2031-03`).get()).data();
    assert.deepEqual(
      [record?.granted, record?.tier, record?.lot_id],
      [2000, "pro", `${uid}_allowance_10_${Date.UTC(2031, 3, 1)}`],
    );
    const again = await setPlan({ db: db(), clock }, "admin", { user_id: uid, tier: "pro", ...key });
    assert.equal(again.replayed, true);
    // Another request for the same period grants nothing more.
    await setPlan({ db: db(), clock }, "admin", { user_id: uid, tier: "pro", ...plan() });
    assert.equal((await ledgerOf(uid)).length, 1);
    await assertLedgerInvariants(uid);
  });

  it("when a user upgrades mid-period, then they get the difference; a downgrade applies from the next period", async () => {
    const uid = newUid();
    const clock = at("2031-05-10T00:00:00Z");
    await setPlan({ db: db(), clock }, "admin", { user_id: uid, tier: "free", ...plan() });
    await setPlan({ db: db(), clock }, "admin", { user_id: uid, tier: "pro", ...plan() });
    assert.deepEqual(
      (await ledgerOf(uid)).map((entry) => entry.amount),
      [50, 1950],
    );
    assert.deepEqual(await allowanceLots(uid), [
      { amount: 2000, remaining: 2000, status: "active", expires_at: "2031-06-01T00:00:00.000Z" },
    ]);
    await setPlan({ db: db(), clock }, "admin", { user_id: uid, tier: "free", ...plan() });
    assert.equal((await ledgerOf(uid)).length, 2, "a downgrade takes nothing back and grants nothing");
    assert.equal((await user(uid)).tier, "free");
    // Upgrading again within the period grants nothing: the period already granted more than free's 50.
    await setPlan({ db: db(), clock }, "admin", { user_id: uid, tier: "pro", ...plan() });
    assert.equal((await ledgerOf(uid)).length, 2);
    await setPlan({ db: db(), clock }, "admin", { user_id: uid, tier: "free", ...plan() });
    const next = await grantUserAllowance(db(), uid, DEFAULT_PLANS, at("2031-06-01T00:30:00Z"));
    assert.equal(next, "granted");
    assert.deepEqual((await ledgerOf(uid)).map((entry) => [entry.type, entry.amount]).slice(2), [["grant", 50]]);
    await assertLedgerInvariants(uid);
  });

  it("when an account is deleted and re-opened within a period, then its allowance is not granted again", async () => {
    const uid = newUid();
    const clock = at("2031-08-05T00:00:00Z");
    await setPlan({ db: db(), clock }, "admin", { user_id: uid, tier: "free", ...plan() });
    await db().collection("users").doc(uid).delete();
    await assert.rejects(setPlan({ db: db(), clock }, "admin", { user_id: uid, tier: "free", ...plan() }), {
      code: "not-found",
    });
    await fund(uid, 3); // re-opens the account
    assert.equal(await grantUserAllowance(db(), uid, DEFAULT_PLANS, clock), "current");
    assert.deepEqual(
      (await ledgerOf(uid)).map((entry) => entry.amount),
      [50, 3],
    );
    await assertLedgerInvariants(uid);
  });

  it("when a plan rolls over, then up to max of the previous allowance left at its expiry moves into the new period's lot, once", async () => {
    const uid = newUid();
    const plans: PlansConfig = { plans: { free: { monthly_allowance: 50, rollover: { max: 30 } } } };
    await fund(uid, 5);
    assert.equal(await grantUserAllowance(db(), uid, plans, at("2032-01-15T00:00:00Z")), "granted");
    await spendCredits({ db: db(), clock: at("2032-01-16T00:00:00Z") }, uid, {
      feature: "chat.message",
      quantity: 10,
      idempotency_key: "s",
    });
    assert.equal(await grantUserAllowance(db(), uid, plans, at("2032-02-01T03:00:00Z")), "granted");
    assert.equal(await grantUserAllowance(db(), uid, plans, at("2032-02-02T03:00:00Z")), "current");
    assert.deepEqual((await ledgerOf(uid)).map((entry) => [entry.type, entry.amount, entry.reason]).slice(1), [
      ["grant", 50, "allowance 2032-01 (free)"],
      ["spend", -10, "chat.message × 10"],
      ["expire", -40, "lot-expired"],
      ["grant", 30, "allowance rollover from 2032-01"],
      ["grant", 50, "allowance 2032-02 (free)"],
    ]);
    assert.deepEqual(await allowanceLots(uid), [
      { amount: 50, remaining: 0, status: "expired", expires_at: "2032-02-01T00:00:00.000Z" },
      { amount: 80, remaining: 80, status: "active", expires_at: "2032-03-01T00:00:00.000Z" },
    ]);
    await assertLedgerInvariants(uid);
  });

  it("when grantAllowances runs at a new period, then every user is granted once, a bad user is recorded and the rest proceed", async () => {
    const uids = [newUid("al"), newUid("al"), newUid("al")];
    for (const uid of uids) await fund(uid, 1);
    await db().collection("users").doc(uids[1]).update({ tier: "no-such-plan" });
    const clock = at("2033-07-01T01:00:00Z");
    const stateId = newUid("allowance-state");
    const run = () =>
      grantAllowances({ db: db(), clock, budgetMs: 60_000, pageSize: 200, stateId, plans: DEFAULT_PLANS });
    const first = await run();
    assert.equal(first.complete, true);
    assert.deepEqual(
      first.failed.filter((failure) => uids.includes(failure.uid)).map((failure) => failure.uid),
      [uids[1]],
    );
    assert.deepEqual(
      (await ledgerOf(uids[0])).map((entry) => entry.amount),
      [1, 50],
    );
    // A second run in the period tries only the failed user; the others are not granted again.
    await db().collection("users").doc(uids[1]).update({ tier: "pro" });
    const second = await run();
    assert.ok(second.scanned <= first.failed.length);
    assert.deepEqual(
      (await ledgerOf(uids[1])).map((entry) => entry.amount),
      [1, 2000],
    );
    for (const uid of uids) {
      assert.equal((await ledgerOf(uid)).length, 2);
      await assertLedgerInvariants(uid);
    }
  });

  it("when grantAllowances runs out of time, then the next run resumes where it stopped and each user is granted once", async () => {
    const uids = [newUid("zz-resume"), newUid("zz-resume")];
    for (const uid of uids) await fund(uid, 1);
    const clock = at("2034-02-01T01:00:00Z");
    const stateId = newUid("allowance-state");
    // At least three pages, whatever other tests left in the emulator.
    const users = (await db().collection("users").count().get()).data().count;
    const pageSize = Math.max(1, Math.ceil(users / 3));
    let runs = 0;
    for (;;) {
      runs += 1;
      const run = await grantAllowances({
        db: db(),
        clock,
        budgetMs: 0,
        pageSize,
        stateId,
        plans: DEFAULT_PLANS,
      });
      if (run.complete) break;
      assert.ok(runs <= users + 1, "every run makes progress");
    }
    assert.ok(runs >= 2, "a run without budget does one page and stops");
    for (const uid of uids) {
      assert.deepEqual(
        (await ledgerOf(uid)).map((entry) => entry.amount),
        [1, 50],
      );
      await assertLedgerInvariants(uid);
    }
  });

  it("when the scan of users takes several queries, then each user is scanned once and granted once, also across stops inside a query", async () => {
    const uids = [newUid("al-scan"), newUid("al-scan"), newUid("al-scan")];
    for (const uid of uids) await fund(uid, 1);
    const countUsers = async () => (await db().collection("users").count().get()).data().count;
    const users = await countUsers();
    // Pages of a sixth, two per query: at least three queries, whatever other tests left in the emulator.
    const pageSize = Math.max(1, Math.ceil(users / 6));
    const scan = (clock: Clock, stateId: string, budgetMs: number) =>
      grantAllowances({ db: db(), clock, budgetMs, pageSize, pagesPerQuery: 2, stateId, plans: DEFAULT_PLANS });

    // No budget: each run grants one page and stops when the next arrives, inside a query or at its end.
    const may = at("2036-05-01T01:00:00Z");
    const stateId = newUid("allowance-state");
    let scanned = 0;
    let runs = 0;
    for (let run = await scan(may, stateId, 0); ; run = await scan(may, stateId, 0)) {
      runs += 1;
      scanned += run.scanned;
      if (run.complete) break;
      assert.ok(runs <= users, "every run makes progress");
    }
    // Each user scanned once across the runs, one page per run (bounds, in case another test's late work adds a
    // user meanwhile: a page scanned twice would pass the upper one by a sixth of the users).
    const usersAfter = await countUsers();
    assert.ok(scanned >= users && scanned <= usersAfter, `${scanned} scanned of ${users}-${usersAfter} users`);
    assert.ok(runs >= Math.ceil(users / pageSize) && runs <= Math.ceil(usersAfter / pageSize), `${runs} runs`);

    // A whole budget: one run, across every query.
    const june = await scan(at("2036-06-01T01:00:00Z"), newUid("allowance-state"), 60_000);
    assert.equal(june.complete, true);
    assert.ok(june.scanned >= usersAfter && june.scanned <= (await countUsers()), `${june.scanned} scanned`);
    for (const uid of uids) {
      const ledger = await ledgerOf(uid);
      assert.deepEqual(
        ledger.map((entry) => entry.amount),
        [1, 50, 50],
      );
      assert.deepEqual(
        ledger.slice(1).map((entry) => entry.reason),
        ["allowance 2036-05 (free)", "allowance 2036-06 (free)"],
      );
      // Both of the grant's writes of the user document are there (a batch folds them into one).
      assert.deepEqual([(await user(uid)).credits_balance, (await user(uid)).allowance_period], [101, "2036-06"]);
      await assertLedgerInvariants(uid);
    }
  });

  it("when two grantAllowances runs race each other and spends on the same users, then each user gets the period (and its rollover) exactly once", async () => {
    const plans: PlansConfig = { plans: { free: { monthly_allowance: 50, rollover: { max: 30 } } } };
    const uids = Array.from({ length: 12 }, () => newUid("al-race"));
    for (const [index, uid] of uids.entries()) {
      await fund(uid, 3);
      assert.equal(await grantUserAllowance(db(), uid, plans, at("2035-03-10T00:00:00Z")), "granted");
      // 50 − 10 × i left in March's lot: rollovers of 30 (capped) down to none.
      if (index % 6 > 0)
        await spendCredits({ db: db(), clock: at("2035-03-20T00:00:00Z") }, uid, {
          feature: "chat.message",
          quantity: 10 * (index % 6),
          idempotency_key: `march-${uid}`,
        });
    }
    const clock = at("2035-04-01T01:00:00Z");
    const run = (tag: string, commitWrites?: number) =>
      grantAllowances({
        db: db(),
        clock,
        budgetMs: 60_000,
        pageSize: 200,
        stateId: newUid(`allowance-race-${tag}`),
        plans,
        batchUsers: 4,
        concurrency: 2,
        commitWrites,
      });
    // Spends land between the runs' reads and commits, so some batches find a user changed and fail as a whole.
    const spends = uids.slice(0, 6).map((uid) =>
      spendCredits({ db: db(), clock }, uid, {
        feature: "chat.message",
        quantity: 1,
        idempotency_key: `april-${uid}`,
      }),
    );
    // One run commits each batch whole, the other a user or two per commit (a grant with a rollover writes 7).
    const [first, second] = await Promise.all([run("a"), run("b", 14), ...spends]);
    assert.equal(first.complete && second.complete, true);
    assert.deepEqual(
      [...first.failed, ...second.failed].filter((failure) => uids.includes(failure.uid)),
      [],
    );
    for (const [index, uid] of uids.entries()) {
      const april = (await ledgerOf(uid))
        .filter((entry) => String(entry.reason).includes("2035-04") || String(entry.reason).includes("from 2035-03"))
        .map((entry) => [entry.type, entry.amount, entry.reason]);
      const left = 50 - 10 * (index % 6);
      assert.deepEqual(
        april,
        [
          ...(Math.min(30, left) > 0 ? [["grant", Math.min(30, left), "allowance rollover from 2035-03"]] : []),
          ["grant", 50, "allowance 2035-04 (free)"],
        ],
        `${uid}: the period and its rollover once`,
      );
      const expired = (await ledgerOf(uid)).filter((entry) => entry.type === "expire");
      assert.deepEqual(
        expired.map((entry) => entry.amount),
        left > 0 ? [-left] : [],
        `${uid}: March's lot expired once`,
      );
      await assertLedgerInvariants(uid);
    }
  });
});
