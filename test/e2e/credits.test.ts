import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { PRICE_BOOK } from "../../functions/src/credits/price-book";
import { assertLedgerInvariants, footprint, fund, ledgerOf } from "../support/credits";
import { callFunction, newUid, suite } from "../support/suite";

interface Change {
  transaction_id: string;
  amount: number;
  balance: number;
  held: number;
  available: number;
  version: number;
  replayed: boolean;
}

const spend = (uid: string, data: Record<string, unknown>) => callFunction<Change>("spendCredits", data, { uid });
const admin = { uid: "admin-1", claims: { admin: true } };

describe("e2e: credits through the functions emulator", function () {
  this.timeout(400_000);

  // The exactly-K-of-N property at scale (50 spends) lives in test/integration/credits-race.test.ts, where it
  // measures the code; through the emulator a small race shows the callable path keeps it.
  it("when 5 spends race through the callable for a balance that covers exactly 2, then exactly 2 succeed and the rest get failed-precondition", async () => {
    const uid = newUid();
    const unit = PRICE_BOOK["image.generate"]; // 10 credits each
    await fund(uid, unit * 2);
    // The functions emulator starts one worker process per concurrent request; start them with requests that write nothing.
    const warm = await Promise.all(
      Array.from({ length: 5 }, () =>
        callFunction("spendCredits", { feature: "warm-up" }, { uid }, { timeoutMs: 180_000 }),
      ),
    );
    assert.ok(warm.every((answer) => answer.error?.status === "INVALID_ARGUMENT"));
    const results = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        callFunction<Change>(
          "spendCredits",
          { feature: "image.generate", quantity: 1, idempotency_key: `race-${i}` },
          { uid },
          { timeoutMs: 180_000 },
        ),
      ),
    );
    const ok = results.filter((r) => r.result);
    const refused = results.filter((r) => r.error);
    assert.equal(ok.length, 2, JSON.stringify(refused.map((r) => r.error?.status)));
    for (const r of refused) {
      assert.equal(r.error?.status, "FAILED_PRECONDITION");
      const details = r.error?.details as { available: number; required: number };
      assert.equal(details.required, unit);
      assert.ok(details.available < unit);
    }
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 0);
    assert.equal(state.entries, 3); // the grant and 2 spends
  });

  it("when a spend is replayed with its key, then the first result comes back and nothing is charged twice", async () => {
    const uid = newUid();
    await fund(uid, 100);
    const request = {
      feature: "chat.message",
      quantity: 3,
      idempotency_key: "replay-1",
      metadata: { conversation: "c1" },
    };
    const first = await spend(uid, request);
    const second = await spend(uid, request);
    assert.equal(first.result?.replayed, false);
    assert.equal(second.result?.replayed, true);
    assert.equal(second.result?.transaction_id, first.result?.transaction_id);
    assert.equal(second.result?.balance, 97);
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 97);
    assert.equal(state.entries, 2);
  });

  it("when 10 duplicates of one spend arrive at once, then one takes effect and all ten get its transaction id", async () => {
    const uid = newUid();
    await fund(uid, 100);
    const request = { feature: "report.page", quantity: 2, idempotency_key: `dup-${randomUUID()}` };
    const results = await Promise.all(Array.from({ length: 10 }, () => spend(uid, request)));
    assert.ok(
      results.every((r) => r.result),
      JSON.stringify(results.map((r) => r.error)),
    );
    assert.equal(new Set(results.map((r) => r.result!.transaction_id)).size, 1);
    assert.equal(results.filter((r) => !r.result!.replayed).length, 1);
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 100 - 8);
    assert.equal(state.entries, 2);
  });

  it("when a key is reused with other parameters, then already-exists and nothing is written", async () => {
    const uid = newUid();
    await fund(uid, 100);
    await spend(uid, { feature: "chat.message", quantity: 1, idempotency_key: "k-1" });
    const before = await footprint(uid);
    const reuse = await spend(uid, { feature: "chat.message", quantity: 2, idempotency_key: "k-1" });
    assert.equal(reuse.error?.status, "ALREADY_EXISTS");
    assert.equal(await footprint(uid), before);
  });

  it("when the input is bad, then invalid-argument names the field and nothing is written", async () => {
    const uid = newUid();
    await fund(uid, 100);
    const before = await footprint(uid);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ feature: "gpu.free", quantity: 1, idempotency_key: "a" }, "feature"],
      [{ feature: "chat.message", quantity: 1, idempotency_key: "a", credits_balance: 1e9 }, ""],
      [{ feature: "chat.message", quantity: 0, idempotency_key: "a" }, "quantity"],
      [{ feature: "chat.message", quantity: 1, idempotency_key: "" }, "idempotency_key"],
      [{ feature: "chat.message", quantity: 1, idempotency_key: "x".repeat(256) }, "idempotency_key"],
    ];
    for (const [data, field] of cases) {
      const answer = await spend(uid, data);
      assert.equal(answer.error?.status, "INVALID_ARGUMENT", JSON.stringify(data));
      const issues = (answer.error?.details as { issues: Array<{ path: string; code: string }> }).issues;
      assert.ok(issues.length > 0);
      if (field) assert.equal(issues[0].path, field);
      else assert.equal(issues[0].code, "unrecognized_keys");
    }
    assert.equal(await footprint(uid), before);
  });

  it("when unauthenticated or not an admin, then unauthenticated / permission-denied", async () => {
    const anonymous = await callFunction("spendCredits", {
      feature: "chat.message",
      quantity: 1,
      idempotency_key: "a",
    });
    assert.equal(anonymous.error?.status, "UNAUTHENTICATED");
    const uid = newUid();
    const grant = await callFunction(
      "grantCredits",
      { user_id: uid, amount: 5, reason: "x", idempotency_key: "g" },
      { uid },
    );
    assert.equal(grant.error?.status, "PERMISSION_DENIED");
    assert.equal(await footprint(uid), JSON.stringify({ user: null, ledger: 0, holds: 0, keys: 0, lots: [] }));
  });

  it("when an admin grants, refunds and adjusts, then each is one ledger entry and refunds never exceed the spend", async () => {
    const uid = newUid();
    const granted = await callFunction<Change>(
      "grantCredits",
      { user_id: uid, amount: 50, reason: "welcome", idempotency_key: "g1" },
      admin,
    );
    assert.equal(granted.result?.balance, 50);
    const spent = await spend(uid, { feature: "image.generate", quantity: 2, idempotency_key: "s1" });
    assert.equal(spent.result?.balance, 30);
    const txId = spent.result.transaction_id;
    const partial = await callFunction<Change>(
      "refundCredits",
      { transaction_id: txId, amount: 5, reason: "bad image", idempotency_key: "r1" },
      admin,
    );
    assert.equal(partial.result?.balance, 35);
    const tooMuch = await callFunction(
      "refundCredits",
      { transaction_id: txId, amount: 16, reason: "x", idempotency_key: "r2" },
      admin,
    );
    assert.equal(tooMuch.error?.status, "FAILED_PRECONDITION");
    assert.equal((tooMuch.error?.details as { refundable: number }).refundable, 15);
    const rest = await callFunction<Change>(
      "refundCredits",
      { transaction_id: txId, reason: "rest", idempotency_key: "r3" },
      admin,
    );
    assert.equal(rest.result?.amount, 15);
    const again = await callFunction(
      "refundCredits",
      { transaction_id: txId, reason: "again", idempotency_key: "r4" },
      admin,
    );
    assert.equal(again.error?.status, "FAILED_PRECONDITION");
    const notSpend = await callFunction(
      "refundCredits",
      { transaction_id: granted.result.transaction_id, reason: "x", idempotency_key: "r5" },
      admin,
    );
    assert.equal(notSpend.error?.status, "FAILED_PRECONDITION");
    const down = await callFunction(
      "adjustCredits",
      { user_id: uid, amount: -51, reason: "too far", idempotency_key: "a1" },
      admin,
    );
    assert.equal(down.error?.status, "FAILED_PRECONDITION");
    const fix = await callFunction<Change>(
      "adjustCredits",
      { user_id: uid, amount: -10, reason: "correction", idempotency_key: "a2" },
      admin,
    );
    assert.equal(fix.result?.balance, 40);
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.entries, 5);
    assert.deepEqual(
      (await ledgerOf(uid)).map((e) => e.type),
      ["grant", "spend", "refund", "refund", "adjust"],
    );
  });

  it("when the ledger is listed, then pages are newest first, bounded and chained by cursor", async () => {
    const uid = newUid();
    await fund(uid, 100);
    for (let i = 0; i < 6; i++) await spend(uid, { feature: "chat.message", quantity: 1, idempotency_key: `p${i}` });
    type Page = { items: Array<{ version: number; type: string }>; next_cursor: string | null };
    const first = await callFunction<Page>("listTransactions", { limit: 4 }, { uid });
    assert.deepEqual(
      first.result?.items.map((i) => i.version),
      [7, 6, 5, 4],
    );
    const second = await callFunction<Page>(
      "listTransactions",
      { limit: 4, cursor: first.result.next_cursor },
      { uid },
    );
    assert.deepEqual(
      second.result?.items.map((i) => i.version),
      [3, 2, 1],
    );
    assert.equal(second.result?.next_cursor, null);
    const tooMany = await callFunction("listTransactions", { limit: 101 }, { uid });
    assert.equal(tooMany.error?.status, "INVALID_ARGUMENT");
    const forged = await callFunction("listTransactions", { cursor: "not-a-cursor" }, { uid });
    assert.equal(forged.error?.status, "INVALID_ARGUMENT");
    const other = await callFunction<Page>("listTransactions", {}, { uid: newUid() });
    assert.deepEqual(other.result?.items, [], "a user sees only their own ledger");
  });

  it("when a user on a plan with a promo lists lots and asks for the balance, then the callables show the lots, burn order and next expiry", async () => {
    const uid = newUid();
    const expiresAt = new Date(Date.now() + 2 * 86_400_000);
    expiresAt.setUTCMilliseconds(0);
    const promo = await callFunction<Change & { lot_id: string }>(
      "grantCredits",
      {
        user_id: uid,
        amount: 30,
        source: "promo",
        expires_at: expiresAt.toISOString(),
        reason: "welcome promo",
        idempotency_key: "promo",
      },
      admin,
    );
    assert.ok(promo.result?.lot_id);
    const plan = await callFunction<{ tier: string; period_start: string; period_end: string }>(
      "setPlan",
      { user_id: uid, tier: "free", idempotency_key: "plan" },
      admin,
    );
    assert.equal(plan.result?.tier, "free");
    const denied = await callFunction("setPlan", { user_id: uid, tier: "pro", idempotency_key: "p2" }, { uid });
    assert.equal(denied.error?.status, "PERMISSION_DENIED");
    type Lots = { items: Array<{ lot_id: string; source: string; remaining: number; expires_at: string | null }> };
    const lots = await callFunction<Lots>("listLots", {}, { uid });
    assert.deepEqual(
      lots.result?.items.map((lot) => [lot.source, lot.remaining]),
      [
        ["allowance", 50],
        ["promo", 30],
      ],
    );
    assert.equal(lots.result?.items[0].expires_at, plan.result?.period_end);
    type BalanceAnswer = { balance: number; lots: { count: number; next_expiry: { amount: number; at: string } } };
    const balance = await callFunction<BalanceAnswer>("getBalance", {}, { uid });
    assert.equal(balance.result?.balance, 80);
    assert.equal(balance.result?.lots.count, 2);
    // The promo expires first (in two days), before the month's allowance, unless the month ends sooner.
    const next = balance.result?.lots.next_expiry;
    assert.ok(next && typeof next.at === "string" && [30, 50].includes(next.amount));
    await assertLedgerInvariants(uid);
  });

  it("when the app's server meters usage with the API key, then it is charged once; a wrong key gets 401 and writes nothing", async () => {
    const uid = newUid();
    await fund(uid, 20);
    const url = `${suite.functionsBaseUrl}/meterUsage`;
    const body = JSON.stringify({ user_id: uid, feature: "tts.1k_chars", quantity: 3, idempotency_key: "m1" });
    const post = (key: string) =>
      fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body,
      });
    const before = await footprint(uid);
    const denied = await post("wrong-key");
    assert.equal(denied.status, 401);
    assert.equal(await footprint(uid), before);
    const first = await post(process.env.METERING_API_KEY!);
    assert.equal(first.status, 201);
    const replay = await post(process.env.METERING_API_KEY!);
    assert.equal(replay.status, 200);
    const replayed = (await replay.json()) as { result: Change };
    assert.equal(replayed.result.replayed, true);
    assert.equal(replayed.result.balance, 14);
    await assertLedgerInvariants(uid);
  });
});
