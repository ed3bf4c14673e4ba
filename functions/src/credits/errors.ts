/** Credit-specific domain errors (mapped to HttpsError by shared/callable.ts). */
import { DomainError } from "../shared/errors";

export class InsufficientCredits extends DomainError {
  constructor(available: number, required: number) {
    super("failed-precondition", `Insufficient credits: ${available} available, ${required} required.`, {
      reason: "insufficient-credits",
      available,
      required,
    });
  }
}

/**
 * A user who owes credits after a payment clawback (balance below zero)
 * cannot spend, hold or start a job until a purchase or grant pays the debt.
 */
export class NegativeBalance extends DomainError {
  constructor(balance: number, available: number, debt: number) {
    super(
      "failed-precondition",
      `Credits are owed after a payment was taken back: ${available} available, ${debt} owed.`,
      {
        reason: "negative-balance",
        balance,
        available,
        debt,
      },
    );
  }
}

/**
 * The user document was deleted (the account is closed, see closure.ts): nothing may draw credits from it
 * (spend, hold, createJob, a negative adjustment) or adjust it. Not a shortage: topping up with credits the
 * user cannot reach would not help. A grant or purchase re-opens the account with its kept balance.
 */
export class AccountClosed extends DomainError {
  constructor(balance: number) {
    super("failed-precondition", "This credit account is closed (the user was deleted).", {
      reason: "account-closed",
      balance,
    });
  }
}

export class IdempotencyKeyReused extends DomainError {
  constructor() {
    super("already-exists", "This idempotency key was already used with different parameters.", {
      reason: "idempotency-key-reused",
    });
  }
}

export class RateLimited extends DomainError {
  constructor(retryAfterMs: number) {
    super("resource-exhausted", `Too many requests; retry in ${Math.ceil(retryAfterMs / 1000)} s.`, {
      reason: "rate-limited",
      retry_after_ms: retryAfterMs,
    });
  }
}

export class LedgerConflict extends DomainError {
  constructor(message: string) {
    super("failed-precondition", message, { reason: "ledger-conflict" });
  }
}
