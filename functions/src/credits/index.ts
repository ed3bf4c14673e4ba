/**
 * The credits capability as other domains use it. Jobs, mirrors, retention
 * and the rest import from here only; everything else in credits/ is its own.
 *
 * - errors a caller may catch or throw for a credit refusal;
 * - account reads (inside a transaction, or of past ledger versions);
 * - holds: placing one, and settling it inside the caller's transaction
 *   (a job's state and its hold change together) or on its own;
 * - `idempotentTransaction`, the lock → transaction → idempotency-record
 *   protocol of every keyed change;
 * - lot views: getBalance's summary, and the lots expiring soon (the warning);
 * - the price book;
 * - purchases: a paid payment granted once, with the payment's own records
 *   in the same transaction; and its corrections (clawback, reinstate) the same way;
 * - auto top-up: its settings, and a charge's outcome (the ledger itself starts top-ups).
 */
export { InsufficientCredits, NegativeBalance } from "./errors";
export {
  TRANSACTION_ATTEMPTS,
  availableAfter,
  readAccount,
  runCreditTransaction,
  type Account,
  type Balance,
} from "./ledger";
export {
  holdRef,
  placeHold,
  readHold,
  readHoldLots,
  releaseExpiredHold,
  settleHoldInTransaction,
  type Hold,
  type Settlement,
  type SettleResult,
} from "./holds";
export { idempotentTransaction, type IdempotencyScope } from "./idempotency";
export {
  expireDueLot,
  expiringLots,
  lotSummary,
  type ExpiringCursor,
  type ExpiringLot,
  type LotSummary,
} from "./lot-views";
export { priceOf } from "./price-book";
export { purchaseTransaction, type GrantPurchase, type PurchaseGrant, type PurchaseResult } from "./purchase";
export { paymentCorrectionTransaction, type CorrectPayment, type PaymentCorrection } from "./clawback";
export {
  MAX_CONSECUTIVE_FAILURES,
  NoPaymentMethod,
  TOPUPS,
  autoTopUpOf,
  configureAutoTopUp,
  monthOf,
  settleTopUp,
  topUpRefs,
  topUpTransaction,
  type AutoTopUpSettings,
  type AutoTopUpState,
  type TopUp,
  type TopUpOutcome,
  type TopUpSettlement,
} from "./topup";
