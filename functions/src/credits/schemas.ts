/**
 * Input schemas of the credit callables and endpoints. All strict: an unknown
 * field (say `credits_balance`) is an error, not silently dropped.
 */
import * as z from "zod";
import { documentId, mapKey } from "../shared/ids";
import { MAX_QUANTITY, PRICE_BOOK, isKnownFeature } from "./price-book";

/** Payment-API style idempotency key: 1–255 printable ASCII characters. */
const idempotencyKey = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21-\x7e]+$/, "must be printable ASCII without spaces");

const credits = (max: number) => z.number().int().positive().max(max);

/** Small free-form metadata: at most 20 string/number/boolean values with short keys; no prototype or reserved keys. */
const metadata = z
  .record(
    z
      .string()
      .min(1)
      .max(64)
      .regex(/^[A-Za-z0-9_.-]+$/, "keys are letters, digits, _ . -")
      .pipe(mapKey),
    z.union([z.string().max(500), z.number(), z.boolean()]),
  )
  .refine((value) => Object.keys(value).length <= 20, "at most 20 entries");

const feature = z
  .string()
  .min(1)
  .max(64)
  .refine(isKnownFeature, { error: `unknown feature; known: ${Object.keys(PRICE_BOOK).join(", ")}` });

const quantity = z.number().int().positive().max(MAX_QUANTITY);

const userId = documentId({ max: 128 });

const reason = z.string().trim().min(1).max(500);

const lotPriority = z.number().int().min(0).max(100);

export const SpendInput = z
  .object({ feature, quantity, idempotency_key: idempotencyKey, metadata: metadata.optional() })
  .strict();

export const MeterInput = SpendInput.extend({ user_id: userId }).strict();

export const ListTransactionsInput = z
  .object({
    limit: z.number().int().min(1).max(100).default(20),
    cursor: z.string().max(200).optional(),
  })
  .strict();

export const GrantInput = z
  .object({
    user_id: userId,
    amount: credits(10_000_000),
    type: z.enum(["grant", "purchase"]).default("grant"),
    reason,
    idempotency_key: idempotencyKey,
    /** The lot's source; defaults to the type (a promo is a grant with source `promo`). */
    source: z.enum(["grant", "promo", "purchase"]).optional(),
    /** Burn priority, lower first; defaults to the source's (promo 20, grant 50, purchase 80). */
    priority: lotPriority.optional(),
    /** When the granted credits lapse (ISO 8601, in the future); never when absent. */
    expires_at: z.string().max(40).datetime({ offset: true }).optional(),
  })
  .strict();

export const RefundInput = z
  .object({
    transaction_id: documentId({ max: 200 }),
    amount: credits(10_000_000).optional(),
    reason,
    idempotency_key: idempotencyKey,
  })
  .strict();

export const AdjustInput = z
  .object({
    user_id: userId,
    amount: z
      .number()
      .int()
      .min(-10_000_000)
      .max(10_000_000)
      .refine((value) => value !== 0, "must not be zero"),
    reason,
    idempotency_key: idempotencyKey,
  })
  .strict();

/** `listLots`: the caller's lots, active ones (in burn order) by default. */
export const ListLotsInput = z
  .object({
    status: z.enum(["active", "all"]).default("active"),
    limit: z.number().int().min(1).max(100).default(20),
    cursor: z.string().max(400).optional(),
  })
  .strict();

/** A plan's name: the `users.tier` value. */
const tier = z
  .string()
  .min(1)
  .max(40)
  .regex(/^[a-z0-9_-]+$/, "lowercase letters, digits, _ and -");

/** One plan of `config/plans`: its monthly allowance and what of it rolls over to the next month. */
export const PlanConfig = z
  .object({
    monthly_allowance: z.number().int().min(0).max(10_000_000),
    allowance_priority: lotPriority.optional(),
    rollover: z
      .union([z.literal("none"), z.object({ max: z.number().int().min(0).max(10_000_000) }).strict()])
      .default("none"),
  })
  .strict();

/** Firestore `config/plans`. */
export const PlansConfig = z
  .object({
    plans: z.record(tier, PlanConfig).refine((plans) => Object.keys(plans).length > 0, "at least one plan"),
  })
  .strict();

/** `setPlan` (admin). */
export const SetPlanInput = z.object({ user_id: userId, tier, idempotency_key: idempotencyKey }).strict();

/** `min_version`: the newest ledger version the client has seen; an older cached balance is never served. */
export const BalanceInput = z
  .object({ min_version: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional() })
  .strict();

/** A client-queued operation in RTDB `operation_queues/{uid}/{opId}`. */
export const QueuedOperation = z
  .object({
    type: z.literal("spend"),
    feature,
    quantity,
    metadata: metadata.optional(),
    created_at: z.number().int().nonnegative(),
  })
  .strict();

export type SpendInput = z.infer<typeof SpendInput>;
export type MeterInput = z.infer<typeof MeterInput>;
export type GrantInput = z.infer<typeof GrantInput>;
export type RefundInput = z.infer<typeof RefundInput>;
export type AdjustInput = z.infer<typeof AdjustInput>;
export type ListTransactionsInput = z.infer<typeof ListTransactionsInput>;
export type ListLotsInput = z.infer<typeof ListLotsInput>;
export type PlanConfig = z.infer<typeof PlanConfig>;
export type PlansConfig = z.infer<typeof PlansConfig>;
export type SetPlanInput = z.infer<typeof SetPlanInput>;
export type BalanceInput = z.infer<typeof BalanceInput>;
export type QueuedOperation = z.infer<typeof QueuedOperation>;
