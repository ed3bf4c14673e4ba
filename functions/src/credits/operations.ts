/**
 * Credit use cases. Each is one atomic Firestore commit of idempotency record,
 * user document and ledger entry together (a transaction; a spend's first try
 * a batch guarded by what it read), so an acknowledged change is never
 * half-applied and a retried request never applies twice.
 */
import type { Query, Transaction } from "firebase-admin/firestore";
import { DomainError, InvalidInput, NotFound } from "../shared/errors";
import { AccountClosed, InsufficientCredits } from "./errors";
import {
  idempotentTransaction,
  type IdempotencyScope,
  type IdempotentDeps,
  type IdempotentOptions,
} from "./idempotency";
import {
  TRANSACTIONS,
  available,
  postEntry,
  readLotsFor,
  userRef,
  type Account,
  type Balance,
  type Change,
  type Entry,
  type Posted,
} from "./ledger";
import {
  DEFAULT_PRIORITY,
  hintedLotRefs,
  refundAllocations,
  rememberBurnOrder,
  seedFromHint,
  type Allocation,
} from "./lots";
import { lotSummary, type LotSummary } from "./lot-views";
import { systemClock } from "../shared/time";
import { priceOf } from "./price-book";
import type { AdjustInput, GrantInput, ListTransactionsInput, RefundInput, SpendInput } from "./schemas";

/** Dependencies of the credit use cases. */
export type Deps = IdempotentDeps;

/** What a caller gets back from any change: the entry and the new state, and whether it was a replay. */
export interface ChangeResult extends Posted {
  replayed: boolean;
}

/** How one idempotent change is made: its reads, the change, and what it writes besides the ledger. */
interface ChangeSteps<R> {
  /** Reads the change depends on, besides the account (e.g. the entry a refund is for). */
  read?: (tx: Transaction) => Promise<void>;
  /** The change to post; may refuse by throwing. Writes nothing. */
  build: (account: Account) => Change;
  /** Writes that go with the entry (after it). */
  write?: (tx: Transaction, entry: Entry) => void;
  /** The answer (default: the posted entry). */
  respond?: (entry: Entry) => R;
  /**
   * The change draws lots in burn order (a spend): the lots where this instance saw the user's last draw
   * end are read with the account, saving the burn-order query when nothing changed since (lots.ts hints).
   */
  draws?: boolean;
}

/**
 * Runs an idempotent ledger change for `uid` (see idempotentTransaction): every
 * read (the steps', then the lots the change moves), then the entry and the
 * steps' writes.
 */
async function idempotentChange<R extends object = Posted>(
  deps: Deps,
  scope: IdempotencyScope,
  uid: string,
  steps: ChangeSteps<R>,
  options: IdempotentOptions<R> = {},
): Promise<R & { replayed: boolean }> {
  const clock = deps.clock ?? systemClock;
  // The account as the last attempt (the one that committed) left it.
  let written: { account: Account; drawn: number } | undefined;
  const result = await idempotentTransaction(
    deps,
    uid,
    scope,
    async (tx, account, hinted): Promise<R> => {
      written = undefined;
      if (steps.draws) seedFromHint(account, hinted, clock.now());
      if (steps.read) await steps.read(tx);
      const change = steps.build(account);
      await readLotsFor(tx, deps.db, account, change, clock.now());
      // postEntry checks everything before it writes, so a refusal here has written nothing.
      const entry = postEntry(tx, deps.db, account, change);
      steps.write?.(tx, entry);
      written = { account, drawn: Math.max(0, -change.amount) + Math.max(0, change.heldDelta) };
      return steps.respond ? steps.respond(entry) : (entry.posted as R);
    },
    steps.draws ? { ...options, alsoRead: () => hintedLotRefs(deps.db, uid) } : options,
  );
  if (steps.draws && written?.account.lots && !result.replayed)
    rememberBurnOrder(uid, written.account.version, written.account.lots, written.drawn);
  return result;
}

/** Spends credits for metered usage, priced from the server's price book. */
export function spendCredits(
  deps: Deps,
  uid: string,
  input: SpendInput,
  actor = `user:${uid}`,
  options: IdempotentOptions<Posted> = {},
): Promise<ChangeResult> {
  const cost = priceOf(input.feature, input.quantity);
  const scope: IdempotencyScope = {
    owner: actor === `user:${uid}` ? `user:${uid}` : `${actor}>${uid}`,
    operation: "spend",
    key: input.idempotency_key,
    params: { uid, feature: input.feature, quantity: input.quantity, metadata: input.metadata ?? {} },
  };
  return idempotentChange(
    deps,
    scope,
    uid,
    {
      build: (account) => {
        // No account yet is the same as an empty one for a spender; a closed one is refused by the ledger.
        if (!account.exists && !account.closed) throw new InsufficientCredits(0, cost);
        return {
          type: "spend",
          amount: -cost,
          heldDelta: 0,
          actor,
          reason: `${input.feature} × ${input.quantity}`,
          idempotencyKey: input.idempotency_key,
          feature: input.feature,
          quantity: input.quantity,
          metadata: input.metadata,
          lots: { kind: "draw" },
        };
      },
      draws: true,
    },
    // A spend reads only its record, the account and the user's lots: its first try needs no transaction.
    { guarded: true, ...options },
  );
}

/**
 * Admin keys belong to the user they act on, not to the admin: two admins
 * processing the same purchase with the same key grant it once, and the same
 * key with other parameters is refused, whoever sends it.
 */
function adminKeySpace(uid: string): string {
  return `admin>${uid}`;
}

/**
 * Where an admin's keys were recorded before they moved to the target user (49680e6): a retry, after that deploy,
 * of a request first made before it finds its answer there (IdempotencyScope.formerOwner). Can go once every
 * record there has expired (IDEMPOTENCY_RETENTION_MS after the deploy).
 */
function formerAdminKeySpace(adminUid: string): string {
  return `admin:${adminUid}`;
}

/** A grant's answer: the entry, and the lot its credits went into. */
export interface GrantResult extends ChangeResult {
  lot_id: string;
}

/**
 * Admin: adds credits (a grant or a recorded purchase) as a lot with a source
 * (default: the type), a priority (default: the source's) and an optional
 * expiry in the future. Creates (or re-opens) the account if needed.
 */
export function grantCredits(deps: Deps, adminUid: string, input: GrantInput): Promise<GrantResult> {
  const actor = `admin:${adminUid}`;
  const source = input.source ?? input.type;
  const priority = input.priority ?? DEFAULT_PRIORITY[source];
  const expiresAt = input.expires_at ? new Date(input.expires_at) : null;
  const scope: IdempotencyScope = {
    owner: adminKeySpace(input.user_id),
    formerOwner: formerAdminKeySpace(adminUid),
    operation: "grant",
    key: input.idempotency_key,
    params: {
      user_id: input.user_id,
      amount: input.amount,
      type: input.type,
      reason: input.reason,
      // Only what was given, so keys recorded before lots existed still replay.
      source: input.source,
      priority: input.priority,
      expires_at: expiresAt ? expiresAt.getTime() : undefined,
    },
  };
  return idempotentChange(deps, scope, input.user_id, {
    build: () => {
      if (expiresAt && expiresAt.getTime() <= (deps.clock ?? systemClock).now().getTime()) {
        throw new InvalidInput("Invalid input (expires_at: must be in the future)", [
          { path: "expires_at", message: "must be in the future", code: "custom" },
        ]);
      }
      return {
        type: input.type,
        amount: input.amount,
        heldDelta: 0,
        actor,
        reason: input.reason,
        idempotencyKey: input.idempotency_key,
        lots: { kind: "add", source, priority, expiresAt },
      };
    },
    respond: (entry) => ({ ...entry.posted, lot_id: lotOf(entry.allocations) }),
  });
}

function lotOf(allocations: Allocation[]): string {
  return allocations[0]?.lot_id ?? "";
}

/** Admin: a signed correction; it may not take available credits below zero. */
export function adjustCredits(deps: Deps, adminUid: string, input: AdjustInput): Promise<ChangeResult> {
  const actor = `admin:${adminUid}`;
  const scope: IdempotencyScope = {
    owner: adminKeySpace(input.user_id),
    formerOwner: formerAdminKeySpace(adminUid),
    operation: "adjust",
    key: input.idempotency_key,
    params: { user_id: input.user_id, amount: input.amount, reason: input.reason },
  };
  return idempotentChange(deps, scope, input.user_id, {
    build: (account) => {
      // A closed account takes no correction either way (a positive one would not re-open it: REOPENS).
      if (account.closed) throw new AccountClosed(account.balance);
      if (!account.exists) throw new NotFound("Credit account");
      return {
        type: "adjust",
        amount: input.amount,
        heldDelta: 0,
        actor,
        reason: input.reason,
        idempotencyKey: input.idempotency_key,
        // A positive correction is a lot of its own source; a negative one is taken like a spend.
        lots:
          input.amount > 0
            ? { kind: "add", source: "adjust", priority: DEFAULT_PRIORITY.adjust, expiresAt: null }
            : { kind: "draw" },
      };
    },
  });
}

/** Types of entry a refund may be made against: what took credits from the user. */
const REFUNDABLE = new Set(["spend", "capture"]);

/**
 * Admin: returns credits taken by a spend or capture, in whole or in part,
 * never more in total than that entry took. The running total is kept on the
 * original entry (`refunded_amount`) and updated in the refund's transaction;
 * the entry's money fields never change. The credits go back to the lots the
 * entry took them from, last-drawn first (lots.ts refundAllocations); what
 * goes back to a lot past its expiry expires at once.
 */
export async function refundCredits(deps: Deps, adminUid: string, input: RefundInput): Promise<ChangeResult> {
  const actor = `admin:${adminUid}`;
  const original = deps.db.collection(TRANSACTIONS).doc(input.transaction_id);
  // The owner of an entry never changes, so it can be learnt before the transaction (for the user lock and key space).
  const probe = await original.get();
  if (!probe.exists) throw new NotFound(`Transaction ${input.transaction_id}`);
  const uid = String(probe.get("user_id"));
  const scope: IdempotencyScope = {
    owner: adminKeySpace(uid),
    formerOwner: formerAdminKeySpace(adminUid),
    operation: "refund",
    key: input.idempotency_key,
    params: { transaction_id: input.transaction_id, amount: input.amount ?? null, reason: input.reason },
  };
  let refundable = 0;
  let alreadyRefunded = 0;
  let taken = 0;
  let allocations: Allocation[] | undefined;
  const readOriginal = async (tx: Transaction) => {
    const data = (await tx.get(original)).data() ?? {};
    if (!REFUNDABLE.has(String(data.type))) {
      throw new DomainError(
        "failed-precondition",
        `Only spend and capture entries can be refunded, not ${String(data.type)}.`,
        {
          reason: "not-refundable",
        },
      );
    }
    alreadyRefunded = Number(data.refunded_amount ?? 0);
    taken = -Number(data.amount);
    refundable = taken - alreadyRefunded;
    allocations = data.allocations as Allocation[] | undefined;
  };
  return idempotentChange(deps, scope, uid, {
    read: readOriginal,
    build: () => {
      const amount = input.amount ?? refundable;
      if (amount <= 0 || amount > refundable) {
        throw new DomainError(
          "failed-precondition",
          `At most ${Math.max(refundable, 0)} credits of this transaction can still be refunded.`,
          {
            reason: "refund-exceeds-spend",
            refundable: Math.max(refundable, 0),
            requested: amount,
          },
        );
      }
      return {
        type: "refund",
        amount,
        heldDelta: 0,
        actor,
        reason: input.reason,
        idempotencyKey: input.idempotency_key,
        refundOf: input.transaction_id,
        lots: { kind: "return", to: refundAllocations(uid, allocations, taken, alreadyRefunded, amount) },
      };
    },
    write: (tx, entry) => tx.update(original, { refunded_amount: alreadyRefunded + entry.posted.amount }),
  });
}

/**
 * A balance with what getBalance says about the lots and the debt (cached with it: all change only with the
 * ledger). `debt`: credits a clawback could not find in any lot (`credits_debt`, 0 when none); Σ lots.remaining −
 * debt = balance, so while it is owed the balance (and available) may be below zero and nothing can be spent.
 */
export interface BalanceWithLots extends Balance {
  debt: number;
  lots: LotSummary;
}

export async function getBalance(deps: Deps, uid: string): Promise<BalanceWithLots> {
  const now = (deps.clock ?? systemClock).now();
  const [snapshot, lots] = await Promise.all([userRef(deps.db, uid).get(), lotSummary(deps.db, uid, now)]);
  const data = snapshot.data() ?? {};
  const balance = Number(data.credits_balance ?? 0);
  const held = Number(data.credits_held ?? 0);
  return {
    balance,
    held,
    available: available({ balance, held }),
    version: Number(data.ledger_version ?? 0),
    debt: Number(data.credits_debt ?? 0),
    lots,
  };
}

export interface TransactionView {
  transaction_id: string;
  type: string;
  amount: number;
  balance_after: number;
  held_after: number;
  reason: string;
  feature: string | null;
  quantity: number | null;
  job_id: string | null;
  refund_of: string | null;
  version: number;
  created_at: string | null;
  /** The lots the entry moved (empty for entries from before lots, and for holds' reservations). */
  allocations: Allocation[];
}

/** The caller's ledger, newest first, with an opaque cursor (the last version seen). */
export async function listTransactions(
  deps: Deps,
  uid: string,
  input: ListTransactionsInput,
): Promise<{ items: TransactionView[]; next_cursor: string | null }> {
  let query: Query = deps.db
    .collection(TRANSACTIONS)
    .where("user_id", "==", uid)
    .orderBy("ledger_version", "desc")
    .limit(input.limit);
  if (input.cursor) query = query.startAfter(decodeCursor(input.cursor));
  const snapshot = await query.get();
  const items = snapshot.docs.map((doc) => {
    const data = doc.data();
    return {
      transaction_id: doc.id,
      type: String(data.type),
      amount: Number(data.amount),
      balance_after: Number(data.balance_after),
      held_after: Number(data.held_after),
      reason: String(data.reason ?? ""),
      feature: (data.feature as string | null) ?? null,
      quantity: (data.quantity as number | null) ?? null,
      job_id: (data.job_id as string | null) ?? null,
      refund_of: (data.refund_of as string | null) ?? null,
      version: Number(data.ledger_version),
      created_at: data.created_at ? (data.created_at as { toDate(): Date }).toDate().toISOString() : null,
      allocations: Array.isArray(data.allocations) ? (data.allocations as Allocation[]) : [],
    };
  });
  const last = items[items.length - 1];
  return { items, next_cursor: items.length === input.limit && last ? encodeCursor(last.version) : null };
}

function encodeCursor(version: number): string {
  return Buffer.from(JSON.stringify({ v: version })).toString("base64url");
}

function decodeCursor(cursor: string): number {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as { v?: unknown };
    if (typeof parsed.v === "number" && Number.isSafeInteger(parsed.v) && parsed.v > 0) return parsed.v;
  } catch {
    // fall through
  }
  throw new DomainError("invalid-argument", "Invalid cursor.", {
    issues: [{ path: "cursor", message: "not a cursor from listTransactions", code: "custom" }],
  });
}
