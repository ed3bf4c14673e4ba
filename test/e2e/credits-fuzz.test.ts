/**
 * Property-based fuzzing of every credit callable's input through the
 * functions emulator: whatever malformed input arrives, the answer is
 * invalid-argument and nothing is written.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { db, footprint, fund } from "../support/credits";
import { callFunction, newUid } from "../support/suite";

/** Numbers no amount or quantity may be. */
const badNumber = fc.oneof(
  fc.constantFrom(
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    -1,
    0,
    0.5,
    -0.0001,
    1e300,
    2 ** 53,
    -(2 ** 53),
  ),
  fc.double({ noInteger: true }),
  fc.integer({ max: 0 }),
  fc.integer({ min: 10_000_001 }),
);
/** Values of the wrong type where a number belongs. */
const notANumber = fc.oneof(
  fc.string(),
  fc.constant(null),
  fc.boolean(),
  fc.array(fc.nat()),
  fc.constant("10"),
  fc.object(),
);
/** Strings Firestore refuses as document ids: with '/', '.', '..', `__…__`, empty, or over 1,500 bytes. */
const badId = fc.oneof(
  fc.constantFrom(".", "..", "", "x".repeat(1501)),
  fc.tuple(fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 })).map(([a, b]) => `${a}/${b}`),
  fc.string({ maxLength: 40 }).map((middle) => `__${middle}__`),
);
const extraField = fc.constantFrom(
  "credits_balance",
  "credits_held",
  "ledger_version",
  "__proto__",
  "constructor",
  "price",
  "user_id",
);

/** JSON as the wire carries it: NaN/Infinity become null, which must be refused too. */
async function call(name: string, data: unknown, auth: { uid: string; claims?: Record<string, unknown> }) {
  return callFunction(name, JSON.parse(JSON.stringify(data)) as unknown, auth);
}

describe("e2e: fuzzing credit callables with fast-check", function () {
  this.timeout(300_000);
  const admin = { uid: "fuzz-admin", claims: { admin: true } };

  it("when spendCredits gets bad quantities, wrong types, extra fields or prototype keys, then invalid-argument and nothing written", async () => {
    const uid = newUid("fuzz");
    await fund(uid, 1000);
    const before = await footprint(uid);
    const spendCase = fc.oneof(
      badNumber.map((quantity) => ({ feature: "chat.message", quantity, idempotency_key: "f" })),
      notANumber.map((quantity) => ({ feature: "chat.message", quantity, idempotency_key: "f" })),
      extraField.map((field) => ({ feature: "chat.message", quantity: 1, idempotency_key: "f", [field]: 5 })),
      fc.string().map((feature) => ({ feature: `x${feature}`, quantity: 1, idempotency_key: "f" })),
      fc
        .dictionary(fc.constantFrom("__proto__", "constructor", "prototype"), fc.string())
        .filter((m) => Object.keys(m).length > 0)
        .map((metadata) => ({ feature: "chat.message", quantity: 1, idempotency_key: "f", metadata })),
      fc.constant(
        JSON.parse('{"feature":"chat.message","quantity":1,"idempotency_key":"f","__proto__":{"admin":true}}'),
      ),
    );
    await fc.assert(
      fc.asyncProperty(spendCase, async (data) => {
        const answer = await callFunction("spendCredits", data, { uid });
        assert.equal(answer.error?.status, "INVALID_ARGUMENT", JSON.stringify(data));
      }),
      { numRuns: 60, seed: Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31), verbose: true },
    );
    assert.equal(await footprint(uid), before);
  });

  it("when admin callables get bad amounts, extra fields or ids Firestore refuses, then invalid-argument and nothing written", async () => {
    const uid = newUid("fuzz");
    await fund(uid, 1000);
    const before = await footprint(uid);
    const adminCase = fc.oneof(
      fc.oneof(badNumber, notANumber).map((amount) => ({
        name: "grantCredits",
        data: { user_id: uid, amount, reason: "fuzz", idempotency_key: "a" },
      })),
      // Adjustments may be negative; only non-integers, zero, out-of-range values and wrong types are bad.
      fc
        .oneof(badNumber, notANumber)
        .filter((amount) => !(Number.isSafeInteger(amount) && amount !== 0 && Math.abs(amount as number) <= 10_000_000))
        .map((amount) => ({
          name: "adjustCredits",
          data: { user_id: uid, amount, reason: "fuzz", idempotency_key: "a" },
        })),
      fc.tuple(fc.constantFrom("grantCredits", "adjustCredits"), extraField).map(([name, field]) => ({
        name,
        data: { user_id: uid, amount: 5, reason: "fuzz", idempotency_key: "a", [field]: 1 },
      })),
      fc.oneof(badNumber, notANumber).map((amount) => ({
        name: "refundCredits",
        data: { transaction_id: `${uid}_v1`, amount, reason: "fuzz", idempotency_key: "a" },
      })),
      fc
        .oneof(fc.integer({ min: 101 }), fc.integer({ max: 0 }), notANumber)
        .map((limit) => ({ name: "listTransactions", data: { limit } })),
      // Lots: a priority outside 0–100 or not an integer, an expiry that is not a future ISO 8601 time, another source.
      fc
        .oneof(fc.integer({ min: 101 }), fc.integer({ max: -1 }), fc.double({ min: 0.1, max: 99.9 }), notANumber)
        .map((priority) => ({
          name: "grantCredits",
          data: { user_id: uid, amount: 5, reason: "fuzz", idempotency_key: "a", priority },
        })),
      fc
        .oneof(
          fc.string(),
          fc.date({ max: new Date("2020-01-01T00:00:00Z"), noInvalidDate: true }).map((date) => date.toISOString()),
          notANumber,
        )
        .map((expires_at) => ({
          name: "grantCredits",
          data: { user_id: uid, amount: 5, reason: "fuzz", idempotency_key: "a", expires_at },
        })),
      fc.oneof(fc.constantFrom("allowance", "legacy", "adjust", ""), notANumber).map((source) => ({
        name: "grantCredits",
        data: { user_id: uid, amount: 5, reason: "fuzz", idempotency_key: "a", source },
      })),
      fc
        .oneof(
          fc.integer({ min: 101 }).map((limit) => ({ limit })),
          fc.constantFrom("open", "expired", "").map((status) => ({ status })),
          fc.string({ minLength: 1 }).map((cursor) => ({ cursor: `!${cursor}` })),
        )
        .map((data) => ({ name: "listLots", data })),
      // setPlan: a tier that is not a plan name, or no plan of config/plans; extra fields; ids Firestore refuses.
      fc
        .oneof(fc.constantFrom("", "Pro", "pro plan", "no-such-plan", "x".repeat(41)), notANumber)
        .map((tier) => ({ name: "setPlan", data: { user_id: uid, tier, idempotency_key: "a" } })),
      extraField.map((field) => ({
        name: "setPlan",
        data: { user_id: uid, tier: "pro", idempotency_key: "a", [field]: 1 },
      })),
      badId.map((id) => ({ name: "setPlan", data: { user_id: id, tier: "pro", idempotency_key: "a" } })),
      fc.tuple(fc.constantFrom("grantCredits", "adjustCredits"), badId).map(([name, id]) => ({
        name,
        data: { user_id: id, amount: 5, reason: "fuzz", idempotency_key: "a" },
      })),
      badId.map((id) => ({
        name: "refundCredits",
        data: { transaction_id: id, reason: "fuzz", idempotency_key: "a" },
      })),
    );
    await fc.assert(
      fc.asyncProperty(adminCase, async ({ name, data }) => {
        const answer = await call(name, data, admin);
        assert.equal(answer.error?.status, "INVALID_ARGUMENT", `${name} ${JSON.stringify(data)}`);
      }),
      { numRuns: 60, seed: Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31), verbose: true },
    );
    assert.equal(await footprint(uid), before);
    // Admin keys live in the target user's key space; only the funding grant's record may be there.
    const adminKeys = await db().collection("idempotency_keys").where("owner", "==", `admin>${uid}`).get();
    assert.equal(adminKeys.size, 1, "no idempotency record was written by a refused admin call");
  });
});
