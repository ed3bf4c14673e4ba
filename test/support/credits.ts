/** Test helpers for credits: the Admin clients, seeding through the ledger, and the invariant checker. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { DocumentData, DocumentSnapshot, Firestore } from "firebase-admin/firestore";
// Through stores.ts, whose root hook closes the Admin apps: a run of only credits files must exit too.
import { firestore } from "./stores";
import { NotRemembered, recallCommitted } from "../../functions/src/credits/committed-state";
import { grantCredits } from "../../functions/src/credits/operations";
import type { GrantInput } from "../../functions/src/credits/schemas";
import type { Clock } from "../../functions/src/shared/time";

export function db(): Firestore {
  return firestore();
}

/** Gives `uid` credits the way production does (a ledger entry), so invariants hold from the start. */
export async function fund(uid: string, amount: number, store: Firestore = db()): Promise<void> {
  await grantCredits({ db: store }, "test-admin", {
    user_id: uid,
    amount,
    type: "grant",
    reason: "test funding",
    idempotency_key: `fund-${randomUUID()}`,
  });
}

/** A clock stopped at `ms` (epoch milliseconds). */
export const at = (ms: number): Clock => ({ now: () => new Date(ms) });

/** An admin grant of `amount` to `uid` (a lot of `extra.source`, `priority`, `expires_at` when given). */
export async function grantLot(
  uid: string,
  amount: number,
  extra: Partial<Pick<GrantInput, "type" | "source" | "priority" | "expires_at">> = {},
  clock?: Clock,
) {
  return grantCredits({ db: db(), clock }, "test-admin", {
    user_id: uid,
    amount,
    type: extra.type ?? "grant",
    reason: "test",
    idempotency_key: `grant-${randomUUID()}`,
    ...extra,
  });
}

export async function ledgerOf(
  uid: string,
  store: Firestore = db(),
): Promise<Array<Record<string, unknown> & { id: string }>> {
  const snapshot = await store.collection("credit_transactions").where("user_id", "==", uid).get();
  return snapshot.docs
    .map((doc): Record<string, unknown> & { id: string } => ({ id: doc.id, ...doc.data() }))
    .sort((a, b) => Number(a.ledger_version) - Number(b.ledger_version));
}

/**
 * PRODUCT.md invariants 1 and 3 for one user: balance = Σ ledger amounts,
 * held = Σ open holds, available ≥ 0, nothing negative, versions contiguous,
 * and every entry's balance_after / held_after is the running total. Debt
 * (issue 13): credits_debt = Σ debt_delta, never negative; available goes
 * below zero only through a clawback (and stays ≥ −debt). A user
 * without a document but with a ledger is a deleted (closed) account: its
 * ledger must still be whole, and its open holds are what the last entry says.
 * `store`: another Firestore than the suite's (e.g. unwatchedFirestore()).
 */
export async function assertLedgerInvariants(
  uid: string,
  store: Firestore = db(),
): Promise<{ balance: number; held: number; debt: number; entries: number }> {
  const user = (await store.collection("users").doc(uid).get()).data();
  const entries = await ledgerOf(uid, store);
  if (!user && entries.length === 0) return { balance: 0, held: 0, debt: 0, entries: 0 };
  let balance = 0;
  let held = 0;
  let debt = 0;
  entries.forEach((entry, index) => {
    assert.equal(entry.ledger_version, index + 1, `${uid}: ledger versions must be 1..n without gaps`);
    assert.equal(entry.id, `${uid}_v${index + 1}`);
    const availableBefore = balance - held;
    balance += Number(entry.amount);
    held += Number(entry.held_delta);
    debt += Number(entry.debt_delta ?? 0);
    assert.equal(entry.balance_after, balance, `${uid}: balance_after of v${index + 1}`);
    assert.equal(entry.held_after, held, `${uid}: held_after of v${index + 1}`);
    if (entry.debt_after !== undefined) assert.equal(entry.debt_after, debt, `${uid}: debt_after of v${index + 1}`);
    assert.ok(held >= 0 && debt >= 0, `${uid}: negative held or debt after v${index + 1}`);
    assert.ok(balance - held >= -debt, `${uid}: available below −debt after v${index + 1}`);
    if (debt === 0) assert.ok(balance >= 0 && balance - held >= 0, `${uid}: negative state after v${index + 1}`);
    if (balance - held < 0 && balance - held < availableBefore)
      assert.ok(
        entry.type === "clawback" || (entry.type === "expire" && availableBefore < 0),
        `${uid}: only a clawback takes available below zero (v${index + 1} is ${String(entry.type)})`,
      );
  });
  if (user) {
    // A user document written before any credits (e.g. holding only stripe_customer_id) has no credit fields yet.
    assert.equal(user.credits_balance ?? 0, balance, `${uid}: credits_balance = Σ ledger amounts`);
    assert.equal(user.credits_held ?? 0, held, `${uid}: credits_held = Σ held deltas`);
    assert.equal(user.ledger_version ?? 0, entries.length, `${uid}: ledger_version = number of entries`);
    assert.equal(user.credits_debt ?? 0, debt, `${uid}: credits_debt = Σ debt_delta`);
  }
  const holds = await store.collection("credit_holds").where("user_id", "==", uid).where("status", "==", "open").get();
  const openHeld = holds.docs.reduce((sum, doc) => sum + Number(doc.get("amount")), 0);
  assert.equal(held, openHeld, `${uid}: credits_held = Σ open holds`);
  await assertLotInvariants(uid, entries, balance, held, debt, store);
  return { balance, held, debt, entries: entries.length };
}

type Allocation = { lot_id: string; amount: number };
type Lot = Record<string, unknown> & { id: string };

export async function lotsOf(uid: string, store: Firestore = db()): Promise<Lot[]> {
  const snapshot = await store.collection("credit_lots").where("user_id", "==", uid).get();
  return snapshot.docs.map((doc): Lot => ({ id: doc.id, ...doc.data() }));
}

const sumOf = (parts: Allocation[]) => parts.reduce((sum, part) => sum + part.amount, 0);

/**
 * Issue 12's lot invariants for one user (once their credits are in lots):
 * Σ remaining − debt = balance, Σ held = held; no lot negative, held ≤ remaining, a
 * status that fits; every entry's allocations and debt change sum to its amount (held ones to
 * its held delta); each lot is exactly what the entries say they moved; what
 * a spend, hold or negative adjustment drew follows the burn order, and so
 * does a clawback after the purchase lot it takes from first.
 */
export async function assertLotInvariants(
  uid: string,
  entries: Array<Record<string, unknown> & { id: string }>,
  balance: number,
  held: number,
  debt = 0,
  store: Firestore = db(),
): Promise<void> {
  const lots = await lotsOf(uid, store);
  const lotEra = entries.filter((entry) => Array.isArray(entry.allocations));
  if (lots.length === 0 && lotEra.length === 0) return;
  const sum = (field: string) => lots.reduce((total, lot) => total + Number(lot[field]), 0);
  assert.equal(sum("remaining") - debt, balance, `${uid}: Σ lots.remaining − credits_debt = balance`);
  assert.equal(sum("held"), held, `${uid}: Σ lots.held = held`);
  const byId = new Map(lots.map((lot) => [lot.id, lot]));
  for (const lot of lots) {
    const [remaining, lotHeld] = [Number(lot.remaining), Number(lot.held)];
    assert.ok(remaining >= 0 && lotHeld >= 0 && lotHeld <= remaining, `${uid}: lot ${lot.id} out of range`);
    const fits =
      lot.status === "active" ? remaining > 0 : lot.status === "exhausted" ? remaining === 0 : remaining === lotHeld;
    assert.ok(fits, `${uid}: lot ${lot.id} is ${String(lot.status)} with ${remaining} remaining, ${lotHeld} held`);
  }
  const moved = new Map<string, { remaining: number; held: number }>();
  for (const entry of lotEra) {
    const allocations = entry.allocations as Allocation[];
    const heldAllocations = (entry.held_allocations ?? []) as Allocation[];
    const amount = Number(entry.amount);
    const heldDelta = Number(entry.held_delta);
    const debtPart = Math.abs(Number(entry.debt_delta ?? 0));
    assert.equal(
      sumOf(allocations) + debtPart,
      Math.abs(amount),
      `${uid}: allocations (and debt change) of ${entry.id} sum to its amount`,
    );
    assert.equal(sumOf(heldAllocations), Math.abs(heldDelta), `${uid}: held allocations of ${entry.id}`);
    for (const part of allocations) {
      assert.ok(part.amount > 0 && byId.has(part.lot_id), `${uid}: ${entry.id} allocates to lot ${part.lot_id}`);
      const state = moved.get(part.lot_id) ?? { remaining: 0, held: 0 };
      state.remaining += Math.sign(amount) * part.amount;
      moved.set(part.lot_id, state);
    }
    for (const part of heldAllocations) {
      assert.ok(part.amount > 0 && byId.has(part.lot_id), `${uid}: ${entry.id} reserves from lot ${part.lot_id}`);
      const state = moved.get(part.lot_id) ?? { remaining: 0, held: 0 };
      state.held += Math.sign(heldDelta) * part.amount;
      moved.set(part.lot_id, state);
    }
    let drawn = entry.type === "hold" ? heldAllocations : amount < 0 && entry.type !== "capture" ? allocations : [];
    // A clawback takes the purchase lot first, then burn order.
    if (entry.type === "clawback") {
      const firstOther = drawn.findIndex((part) => byId.get(part.lot_id)?.source !== "purchase");
      drawn = firstOther < 0 ? [] : drawn.slice(firstOther);
    }
    const keys = drawn.map((part) => String(byId.get(part.lot_id)?.burn_key));
    assert.deepEqual(keys, [...keys].sort(), `${uid}: ${entry.id} drew its lots in burn order`);
  }
  for (const lot of lots) {
    // A legacy lot starts from the balance it took over, without an entry; every other lot is what its entries moved.
    if (lot.source === "legacy") continue;
    const state = moved.get(lot.id) ?? { remaining: 0, held: 0 };
    assert.deepEqual(
      { remaining: lot.remaining, held: lot.held },
      state,
      `${uid}: lot ${lot.id} = what the ledger's allocations moved`,
    );
  }
}

/** Everything a request could have written for `uid`, to prove a refused request wrote nothing. */
export async function footprint(uid: string): Promise<string> {
  const [user, ledger, holds, keys, lots] = await Promise.all([
    db().collection("users").doc(uid).get(),
    db().collection("credit_transactions").where("user_id", "==", uid).get(),
    db().collection("credit_holds").where("user_id", "==", uid).get(),
    db().collection("idempotency_keys").where("owner", "==", `user:${uid}`).get(),
    db().collection("credit_lots").where("user_id", "==", uid).get(),
  ]);
  const account: Record<"b" | "h" | "v", unknown> | null = user.exists
    ? { b: user.get("credits_balance"), h: user.get("credits_held"), v: user.get("ledger_version") }
    : null;
  return JSON.stringify({
    user: account,
    ledger: ledger.size,
    holds: holds.size,
    keys: keys.size,
    lots: lots.docs.map((doc) => `${doc.id}:${String(doc.get("remaining"))}/${String(doc.get("held"))}`),
  });
}

/**
 * What `store`'s instance remembers of `uid` (credits/committed-state.ts) against what Firestore holds: each
 * remembered document at the update time Firestore has for it must have exactly its fields and values, except a
 * field set to the server's time, which is there but throws NotRemembered when read. One at another update time
 * is stale, which the next spend's commit detects: allowed unless `current`. Returns how many were compared.
 */
export async function assertRememberedAsStored(uid: string, store: Firestore, current = false): Promise<number> {
  const remembered = recallCommitted(store, store.collection("users").doc(uid));
  if (!remembered) return 0;
  const paths = [...remembered.keys()].sort();
  let compared = 0;
  for (const snapshot of await store.getAll(...paths.map((path) => store.doc(path)))) {
    const kept: DocumentSnapshot | undefined = remembered.get(snapshot.ref.path);
    assert.ok(kept?.exists, `${snapshot.ref.path} is remembered as existing`);
    const sameTime = snapshot.exists && kept.updateTime?.isEqual(snapshot.updateTime!);
    if (!sameTime) {
      assert.ok(!current, `${snapshot.ref.path} is remembered at another update time than it has`);
      continue;
    }
    compared += 1;
    const data: DocumentData = kept.data() ?? {};
    const stored: DocumentData = snapshot.data() ?? {};
    assert.deepEqual(Object.keys(data).sort(), Object.keys(stored).sort(), `${snapshot.ref.path}'s fields`);
    const unknown = Object.keys(data).filter(
      (field) => Object.getOwnPropertyDescriptor(data, field)?.get !== undefined,
    );
    for (const field of unknown) assert.throws(() => data[field] as unknown, NotRemembered);
    const known = (fields: Record<string, unknown>) =>
      Object.fromEntries(
        Object.keys(fields)
          .filter((field) => !unknown.includes(field))
          .map((f) => [f, fields[f]]),
      );
    assert.deepEqual(known(data), known(stored), `${snapshot.ref.path} as remembered and as stored`);
  }
  return compared;
}
