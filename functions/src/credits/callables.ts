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
import { adjustInput, emptyInput, grantInput, listTransactionsInput, refundInput, spendInput } from "./schemas";

export const getBalance = callable({
  name: "getBalance",
  access: "user",
  schema: emptyInput,
  handler: (_input, caller) => balanceOf({ db: firestore(), lock: redis() }, caller!.uid),
});

export const spendCredits = callable({
  name: "spendCredits",
  access: "user",
  schema: spendInput,
  handler: async (input, caller) => {
    await spendLimiter().enforce("spend", caller!.uid);
    return spend({ db: firestore(), lock: redis() }, caller!.uid, input);
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
