/** Credit callables: declarations only; the work is in operations.ts. */
import { firestore } from "../adapters/firebase";
import { redis } from "../adapters/redis";
import { callable } from "../shared/callable";
import {
  adjustCredits as adjust,
  getBalance as balanceOf,
  grantCredits as grant,
  listTransactions as list,
  refundCredits as refund,
  spendCredits as spend,
} from "./operations";
import { spendLimiter } from "./ratelimit";
import { BalanceCache, readThrough } from "../mirror/cache";
import { adjustInput, balanceInput, grantInput, listTransactionsInput, refundInput, spendInput } from "./schemas";

/** Served cache-aside from Redis; see mirror/cache.ts for why a stale value cannot win. */
export const getBalance = callable({
  name: "getBalance",
  access: "user",
  schema: balanceInput,
  handler: (input, caller) =>
    readThrough(new BalanceCache(redis()), caller!.uid, input.min_version ?? 0, () => balanceOf({ db: firestore() }, caller!.uid)),
});

export const spendCredits = callable({
  name: "spendCredits",
  access: "user",
  schema: spendInput,
  handler: async (input, caller) => {
    await spendLimiter().enforce("spend", caller!.uid);
    const result = await spend({ db: firestore(), lock: redis() }, caller!.uid, input);
    // The caller now knows this version; make the cache at least as new (best effort). A replay carries
    // the first answer's (older) state, which must not go back into the cache.
    if (!result.replayed) await new BalanceCache(redis()).put(caller!.uid, { balance: result.balance, held: result.held, available: result.available, version: result.version });
    return result;
  },
});

export const listTransactions = callable({
  name: "listTransactions",
  access: "user",
  schema: listTransactionsInput,
  handler: (input, caller) => list({ db: firestore(), lock: redis() }, caller!.uid, input),
});

export const grantCredits = callable({
  name: "grantCredits",
  access: "admin",
  schema: grantInput,
  handler: (input, caller) => grant({ db: firestore(), lock: redis() }, caller!.uid, input),
});

export const refundCredits = callable({
  name: "refundCredits",
  access: "admin",
  schema: refundInput,
  handler: (input, caller) => refund({ db: firestore(), lock: redis() }, caller!.uid, input),
});

export const adjustCredits = callable({
  name: "adjustCredits",
  access: "admin",
  schema: adjustInput,
  handler: (input, caller) => adjust({ db: firestore(), lock: redis() }, caller!.uid, input),
});
