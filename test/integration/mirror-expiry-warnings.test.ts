/**
 * The hourly credits-expiring pass (mirror/expiry-warnings.ts) against the
 * Firestore emulator and the MongoDB wire server: users who make no change
 * are warned once per expiry, page by page, resumed after the budget.
 *
 * Every test works at its own far-future instant, so the lots of other tests
 * (and of earlier runs) are outside its 3-day window.
 */
import assert from "node:assert/strict";
import { randomInt, randomUUID } from "node:crypto";
import { MongoClient } from "../../functions/node_modules/mongodb";
import { placeHold } from "../../functions/src/credits/holds";
import { readAccount } from "../../functions/src/credits/ledger";
import { grantCredits } from "../../functions/src/credits/operations";
import type { GrantInput } from "../../functions/src/credits/schemas";
import { warnExpiringCredits, type ExpiryWarningDeps } from "../../functions/src/mirror/expiry-warnings";
import { observeExpiring } from "../../functions/src/mirror/low-balance";
import { notify, NOTIFICATIONS } from "../../functions/src/notifications/notifications";
import type { Clock } from "../../functions/src/shared/time";
import { db } from "../support/credits";
import "../support/stores"; // its root hook releases the Firebase clients so mocha can exit
import { newUid, suite } from "../support/suite";

const DAY = 86_400_000;
const HOUR = 3_600_000;
const THRESHOLD = 20;
const at = (ms: number): Clock => ({ now: () => new Date(ms) });

describe("integration: credits-expiring warnings for users who make no change", function () {
  this.timeout(120_000);
  let client: MongoClient;
  before(async () => {
    client = await new MongoClient(suite.mongoUri, { serverSelectionTimeoutMS: 5000 }).connect();
  });
  after(() => client.close());

  /** A far-future "now" of the test's own, on a whole hour. */
  const newNow = () => Date.UTC(2100, 0, 1) + randomInt(1, 2_000_000) * HOUR;

  async function grant(now: number, uid: string, amount: number, expiresAt: number, extra: Partial<GrantInput> = {}) {
    return grantCredits({ db: db(), clock: at(now) }, "test-admin", {
      user_id: uid,
      amount,
      type: "grant",
      expires_at: new Date(expiresAt).toISOString(),
      reason: "test",
      idempotency_key: `g-${randomUUID()}`,
      ...extra,
    });
  }

  const notifyInto = (input: Parameters<typeof notify>[1]) => notify({ mongo: client.db("itest") }, input);
  const deps = (now: number, extra: Partial<ExpiryWarningDeps> = {}): ExpiryWarningDeps => ({
    db: db(),
    notify: notifyInto,
    threshold: THRESHOLD,
    clock: at(now),
    budgetMs: 60_000,
    pageSize: 100,
    stateId: `test-${randomUUID()}`,
    ...extra,
  });
  const warnings = async (uids: string[]) =>
    (
      await client
        .db("itest")
        .collection(NOTIFICATIONS)
        .find({ userId: { $in: uids }, type: "credits-expiring" })
        .toArray()
    )
      .map((doc) => [doc.userId as string, doc.dedupeKey as string, doc.toastMessage as string])
      .sort();

  /**
   * Users with no change in the window: `warned` 30 in 2 days; `small` 10 (under the threshold); `later` 30 in
   * 5 days; `split` 12 + 12 from two lots of the same instant (only together worth a warning) and 25 more a day
   * later; `held` 30 of which 15 reserved; `lapsed` 30 whose expiry has passed (not yet expired by retention).
   */
  async function population(now: number) {
    const [warned, small, later, split, held, lapsed] = ["w", "s", "l", "p", "h", "x"].map((tag) =>
      newUid(`expiring-${tag}`),
    );
    const soon = now + 2 * DAY;
    await grant(now, warned, 30, soon, { source: "promo" });
    await grant(now, small, 10, soon);
    await grant(now, later, 30, now + 5 * DAY);
    await grant(now, split, 12, soon);
    await grant(now, split, 12, soon, { source: "promo" });
    await grant(now, split, 25, soon + DAY);
    await grant(now, held, 30, soon, { source: "promo" });
    await db().runTransaction(async (tx) => {
      const account = await readAccount(tx, db(), held);
      return placeHold(tx, db(), account, {
        holdId: `${held}-h`,
        amount: 15,
        expiresAt: new Date(now + 30 * DAY),
        actor: "test",
        reason: "job",
        idempotencyKey: `hold:${held}-h`,
      });
    });
    await grant(now - 2 * HOUR, lapsed, 30, now - HOUR);
    const uids = [warned, small, later, split, held, lapsed];
    const expected = [
      [warned, `credits_expiring:${warned}:${soon}`, `30 of your credits expire on ${iso(soon)}.`],
      [split, `credits_expiring:${split}:${soon}`, `24 of your credits expire on ${iso(soon)}.`],
      [split, `credits_expiring:${split}:${soon + DAY}`, `25 of your credits expire on ${iso(soon + DAY)}.`],
    ].sort();
    return { uids, expected, warned, soon };
  }
  const iso = (ms: number) => new Date(ms).toISOString().slice(0, 10);

  it("when users make no change before their credits expire, then each is warned once per expiry worth the threshold", async () => {
    const now = newNow();
    const { uids, expected, warned, soon } = await population(now);
    const first = await warnExpiringCredits(deps(now));
    assert.deepEqual(first, { complete: true, lots: 6, groups: 5, warned: 3, failed: 0 });
    assert.deepEqual(await warnings(uids), expected);

    // The next hourly pass, and the balance trigger seeing the same expiry, warn nobody again.
    const again = await warnExpiringCredits(deps(now + HOUR));
    assert.deepEqual(again, { ...first, warned: 0 });
    assert.equal(await observeExpiring({ notify: notifyInto }, warned, { amount: 30, at: soon }, new Date(now), 20), 0);
    assert.deepEqual(await warnings(uids), expected);
  });

  it("when the pass runs out of budget after every page, then each run resumes where the last stopped, a user's lots split by a page are judged together, and each warning is sent once", async () => {
    const now = newNow();
    const { uids, expected } = await population(now);
    const stateId = `test-${randomUUID()}`;
    const runs = [];
    for (let run = 0; run < 20; run += 1) {
      // No budget at all: each run stops at the first page that finished a group.
      const outcome = await warnExpiringCredits(deps(now, { stateId, budgetMs: 0, pageSize: 1, concurrency: 1 }));
      runs.push(outcome);
      if (outcome.complete) break;
    }
    assert.equal(runs.at(-1)?.complete, true);
    assert.ok(runs.length > 3, `resumed over several runs (${runs.length})`);
    assert.equal(
      runs.reduce((sum, outcome) => sum + outcome.groups, 0),
      5,
      "every group judged once, none on part of its lots",
    );
    assert.equal(
      runs.reduce((sum, outcome) => sum + outcome.warned, 0),
      3,
    );
    assert.deepEqual(await warnings(uids), expected);
    assert.equal((await db().collection("scheduler_state").doc(stateId).get()).exists, false, "a finished pass");
  });

  it("when sending a warning fails, then the pass goes on and the next pass sends it", async () => {
    const now = newNow();
    const { uids, expected, warned } = await population(now);
    const failing = await warnExpiringCredits(
      deps(now, {
        notify: async (input) => {
          if (input.userId === warned) throw new Error("mongo unavailable");
          return notifyInto(input);
        },
      }),
    );
    assert.equal(failing.complete, true);
    assert.equal(failing.failed, 1);
    assert.equal(failing.warned, 2);
    const next = await warnExpiringCredits(deps(now + HOUR));
    assert.equal(next.warned, 1);
    assert.deepEqual(await warnings(uids), expected);
  });
});
