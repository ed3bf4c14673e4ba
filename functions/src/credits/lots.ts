/**
 * Credit lots: where a user's credits came from, when they lapse, and which
 * ones a change takes. The ledger (ledger.ts) is their only writer: it decides
 * every allocation inside the transaction that posts the entry, so
 * Σ lots.remaining = credits_balance and Σ lots.held = credits_held hold
 * after every commit.
 *
 * A lot `credit_lots/{uid}_{source}_{priority}_{expires_ms|never}` holds
 * `amount` (all ever added), `remaining` (not yet spent or expired, held ones
 * included) and `held` (reserved by open holds, ≤ remaining). Additions with
 * the same source, priority and expiry go into one lot: that is what keeps the
 * number of lots a change must read small.
 *
 * Burn order: `priority` ascending, then `expires_at` ascending (never last),
 * then creation (ledger version). It is stored as one sortable string,
 * `burn_key`, so one query (user, status, burn_key) reads a user's lots in the
 * order they pay, page by page.
 *
 * A change reads lots in two phases, as Firestore transactions require: first
 * `readLots` (every read, before any write of the transaction), then
 * `moveLots` (pure, in memory), then `lotWrites`.
 */
import type { DocumentReference, DocumentSnapshot, Firestore, Transaction } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { DomainError } from "../shared/errors";
import { InsufficientCredits, LedgerConflict } from "./errors";

export const LOTS = "credit_lots";

export const LOT_SOURCES = ["grant", "purchase", "allowance", "promo", "adjust", "legacy"] as const;
export type LotSource = (typeof LOT_SOURCES)[number];
export type LotStatus = "active" | "exhausted" | "expired";

/** Lower burns first. */
export const DEFAULT_PRIORITY: Record<LotSource, number> = {
  allowance: 10,
  promo: 20,
  grant: 50,
  adjust: 50,
  legacy: 60,
  purchase: 80,
};

/**
 * The most lots one change reads (and so writes). A spend, hold or negative
 * adjustment needing more lots than this is refused (`too-many-lots`); since
 * additions with equal source, priority and expiry share a lot, only credits
 * with as many different expiries reach it.
 */
export const MAX_LOTS_PER_CHANGE = 200;
/** Most changes are paid by the first lot or two: read few first, more only when needed. */
const FIRST_PAGE = 10;
const NEXT_PAGE = 100;

/** Which lot paid (or received) how much of an entry; amounts are positive. */
export interface Allocation {
  lot_id: string;
  amount: number;
}

/** How a change moves lots; the ledger turns it into allocations. */
export type LotMove =
  /** Credits added (amount > 0): into the lot of this source, priority and expiry. */
  | { kind: "add"; source: LotSource; priority: number; expiresAt: Date | null }
  /** Credits taken (amount < 0) or reserved (held delta > 0) from unheld credits in burn order. */
  | { kind: "draw" }
  /** A hold settled: its reservation (`held`) released; the captured part (−amount) spent from it in order. */
  | { kind: "settle"; held: Allocation[] }
  /** Credits returned (a refund) to these lots. */
  | { kind: "return"; to: Allocation[] }
  /** A lot past its expiry: its unheld credits expire. */
  | { kind: "lapse"; lotId: string }
  /**
   * Credits taken back by a payment clawback (amount < 0): the unheld credits of the `first` lots (the
   * purchase's own), then of the others in burn order; what no lot covers becomes the user's debt.
   */
  | { kind: "clawback"; first: string[] };

/** One lot as the transaction knows it; changed in memory by moveLots, written by lotWrites. */
export interface Lot {
  id: string;
  ref: DocumentReference;
  /** False for a lot this transaction creates. */
  exists: boolean;
  source: LotSource;
  priority: number;
  expiresAt: number | null;
  amount: number;
  remaining: number;
  held: number;
  /** Credits that expired from it (what an allowance's rollover is measured by). */
  expired: number;
  status: LotStatus;
  burnKey: string;
  entryId: string | null;
  changed: boolean;
}

/** The lots one transaction has read for a user. */
export interface LotBook {
  uid: string;
  /** The transaction's time (ms): a lot with expires_at ≤ now never pays. */
  now: number;
  byId: Map<string, Lot>;
  /** Active lots read in burn order; `complete` once there are no more. */
  ordered: Lot[];
  complete: boolean;
  cursor: [burnKey: string, id: string] | null;
  /** Lots read through the burn-order query. */
  scanned: number;
  /** A user from before lots: checked once whether its legacy lot exists, and created if not. */
  legacyChecked: boolean;
}

/** What a change did to lots, recorded on its entry. */
export interface LotOutcome {
  allocations: Allocation[];
  /**
   * Signed change of the user's debt (`credits_debt`): a clawback's part no lot covered (+), or what an
   * addition paid off before any of it went into a lot (−). Σ allocations + |debtDelta| = |amount|.
   */
  debtDelta: number;
  heldAllocations: Allocation[];
  /** Lots past their expiry that credits went back to: their unheld credits expire at once, one entry each. */
  lapsed: string[];
}

export function lotRef(db: Firestore, lotId: string): DocumentReference {
  return db.collection(LOTS).doc(lotId);
}

/** The lot that credits of this source, priority and expiry go into (one per user and triple). */
export function lotIdOf(uid: string, source: LotSource, priority: number, expiresAt: Date | null): string {
  return `${uid}_${source}_${priority}_${expiresAt ? expiresAt.getTime() : "never"}`;
}

/** The lot holding the balance a user had before lots existed. */
export function legacyLotId(uid: string): string {
  return lotIdOf(uid, "legacy", DEFAULT_PRIORITY.legacy, null);
}

/**
 * Burn order as one string: priority, expiry (never last), the ledger version
 * that created the lot, its source. Fixed widths keep string order = burn order.
 */
export function burnKeyOf(
  priority: number,
  expiresAt: number | null,
  createdVersion: number,
  source: LotSource,
): string {
  const expiry = expiresAt === null ? "9".repeat(13) : String(expiresAt).padStart(13, "0");
  return `${String(priority).padStart(3, "0")}.${expiry}.${String(createdVersion).padStart(16, "0")}.${source}`;
}

/** What a change needs read: lots by id, and unheld credits in burn order. */
export interface LotNeed {
  ids: string[];
  draw: number;
}

export function needOf(uid: string, move: LotMove, amount: number, heldDelta: number): LotNeed {
  switch (move.kind) {
    case "add":
      return { ids: [lotIdOf(uid, move.source, move.priority, move.expiresAt)], draw: 0 };
    case "draw":
      return { ids: [], draw: Math.max(0, -amount) + Math.max(0, heldDelta) };
    case "settle":
      return { ids: move.held.map((part) => part.lot_id), draw: 0 };
    case "return":
      return { ids: move.to.map((part) => part.lot_id), draw: 0 };
    case "lapse":
      return { ids: [move.lotId], draw: 0 };
    case "clawback":
      return { ids: move.first, draw: Math.max(0, -amount) };
  }
}

/** The account fields the lots depend on (see ledger.ts Account). */
export interface LotAccount {
  uid: string;
  balance: number;
  held: number;
  version: number;
  /** False for a user whose credits predate lots and have no legacy lot yet. */
  lotsReady: boolean;
  lots?: LotBook;
}

/**
 * Reads what `need` requires into `account.lots` (created on first use with
 * `now`). Call before the transaction's first write; may be called again
 * (before writes) for further needs.
 */
export async function readLots(
  tx: Transaction,
  db: Firestore,
  account: LotAccount,
  need: LotNeed,
  now: Date,
): Promise<LotBook> {
  const book: LotBook = (account.lots ??= {
    uid: account.uid,
    now: now.getTime(),
    byId: new Map(),
    ordered: [],
    complete: false,
    cursor: null,
    scanned: 0,
    legacyChecked: false,
  });
  if (!account.lotsReady && !book.legacyChecked) await readLegacy(tx, db, account, book);
  const wanted = [...new Set(need.ids)].filter((id) => !book.byId.has(id));
  if (wanted.length > 0) {
    const snapshots = await tx.getAll(...wanted.map((id) => lotRef(db, id)));
    snapshots.forEach((snapshot, index) => {
      if (snapshot.exists) remember(book, lotFrom(snapshot.ref, snapshot.data() ?? {}));
      else remember(book, emptyLot(db, account, wanted[index]));
    });
  }
  while (need.draw > 0 && !book.complete && drawable(book) < need.draw && book.scanned < MAX_LOTS_PER_CHANGE) {
    const { FieldPath } = firestoreValues();
    const pageSize = Math.min(book.scanned === 0 ? FIRST_PAGE : NEXT_PAGE, MAX_LOTS_PER_CHANGE - book.scanned);
    let query = db
      .collection(LOTS)
      .where("user_id", "==", account.uid)
      .where("status", "==", "active")
      .orderBy("burn_key")
      .orderBy(FieldPath.documentId())
      .limit(pageSize);
    if (book.cursor) query = query.startAfter(book.cursor[0], book.cursor[1]);
    const page = await tx.get(query);
    for (const doc of page.docs) {
      const known = book.byId.get(doc.id);
      const lot = known ?? lotFrom(doc.ref, doc.data());
      if (!known) remember(book, lot);
      if (!book.ordered.includes(lot)) book.ordered.push(lot);
    }
    book.scanned += page.size;
    const last = page.docs[page.docs.length - 1];
    if (last) book.cursor = [String(last.get("burn_key")), last.id];
    if (page.size < pageSize) book.complete = true;
  }
  return book;
}

/**
 * Per instance: where each recent draw left the head of the user's burn order (the active lots it had read, at
 * the ledger version it committed). The next draw of that user reads those lots by id in the same getAll as
 * its idempotency record and account (idempotency.ts `alsoRead`), instead of a query after it: one Firestore
 * round trip less. The hint is only a guess about which ids to read. It is used only when the account read
 * with them is still at the hint's version: every change that can make a lot pay (an addition, a refund, a
 * release, the legacy lot) is a ledger entry, which moves the version, so at the same version the lots ahead
 * of the hint's cursor are exactly the hinted ones, and they were read in this transaction. Otherwise the
 * draw reads by query as before.
 */
interface BurnHint {
  version: number;
  ids: string[];
  cursor: [burnKey: string, id: string] | null;
  complete: boolean;
}
const hints = new Map<string, BurnHint>();
const MAX_HINTS = 10_000;

/** The lots to read with the account for a draw by `uid` (none when no draw of theirs was seen here). */
export function hintedLotRefs(db: Firestore, uid: string): DocumentReference[] {
  return (hints.get(uid)?.ids ?? []).map((id) => lotRef(db, id));
}

/**
 * Starts the transaction's lot book from the hinted lots read with the account (`snapshots`, in the order of
 * hintedLotRefs), when the hint is still current (see above); call before readLots. Returns whether it did.
 */
export function seedFromHint(
  account: LotAccount & { exists: boolean },
  snapshots: DocumentSnapshot[],
  now: Date,
): boolean {
  const hint = hints.get(account.uid);
  if (!hint || account.lots || !account.exists || !account.lotsReady || hint.version !== account.version) return false;
  if (snapshots.length !== hint.ids.length || snapshots.some((snapshot, i) => snapshot.id !== hint.ids[i]))
    return false;
  const book: LotBook = {
    uid: account.uid,
    now: now.getTime(),
    byId: new Map(),
    ordered: [],
    complete: hint.complete,
    cursor: hint.cursor,
    scanned: 0,
    legacyChecked: false,
  };
  for (const snapshot of snapshots) {
    if (!snapshot.exists) continue;
    const lot = lotFrom(snapshot.ref, snapshot.data() ?? {});
    remember(book, lot);
    if (lot.status === "active") book.ordered.push(lot);
  }
  book.scanned = book.ordered.length;
  account.lots = book;
  return true;
}

/** A hint holds the lots that cover this many draws like the last (fewer documents in the getAll). */
const HINT_COVER = 4;

/**
 * Records where a committed draw of `drawn` credits left `uid`'s burn order (the book as written, at
 * `version`): the active lots that pay first, as many as cover HINT_COVER such draws, at most a first page.
 */
export function rememberBurnOrder(uid: string, version: number, book: LotBook, drawn: number): void {
  hints.delete(uid);
  // A legacy lot made in this transaction is not where the query stopped: no hint from such a book.
  if (book.legacyChecked) return;
  const ordered = inBurnOrder(book);
  const ids: string[] = [];
  let considered = 0;
  let covered = 0;
  for (const lot of ordered) {
    if (ids.length === FIRST_PAGE || (ids.length > 0 && covered >= HINT_COVER * drawn)) break;
    considered += 1;
    if (lot.status !== "active") continue;
    ids.push(lot.id);
    if (payable(book, lot)) covered += lot.remaining - lot.held;
  }
  const all = considered === ordered.length;
  if (hints.size >= MAX_HINTS) hints.delete(hints.keys().next().value as string);
  hints.set(uid, {
    version,
    ids,
    // Past the last lot looked at; the rest (if any) is read by query from there.
    cursor: all ? book.cursor : [ordered[considered - 1].burnKey, ordered[considered - 1].id],
    complete: all && book.complete,
  });
}

/**
 * A user whose credits predate lots gets one `legacy` lot holding them (and
 * what their open holds reserve), created in the transaction of their first
 * change unless the backfill (lot-backfill.ts) created it already.
 */
async function readLegacy(tx: Transaction, db: Firestore, account: LotAccount, book: LotBook): Promise<void> {
  book.legacyChecked = true;
  const id = legacyLotId(account.uid);
  const snapshot = await tx.get(lotRef(db, id));
  if (snapshot.exists) {
    remember(book, lotFrom(snapshot.ref, snapshot.data() ?? {}));
  } else if (account.balance > 0 || account.held > 0) {
    remember(book, legacyLot(db, account));
  }
  const legacy = book.byId.get(id);
  // The query below does not see a lot created in this transaction; it takes its place in burn order.
  if (legacy && legacy.status === "active" && !legacy.exists) book.ordered.push(legacy);
}

/** The legacy lot for an account's state as read (used by the lazy path and the backfill). */
export function legacyLot(db: Firestore, account: Pick<LotAccount, "uid" | "balance" | "held" | "version">): Lot {
  const id = legacyLotId(account.uid);
  return {
    id,
    ref: lotRef(db, id),
    exists: false,
    source: "legacy",
    priority: DEFAULT_PRIORITY.legacy,
    expiresAt: null,
    amount: account.balance,
    remaining: account.balance,
    held: account.held,
    expired: 0,
    status: account.balance > 0 ? "active" : "exhausted",
    burnKey: burnKeyOf(DEFAULT_PRIORITY.legacy, null, account.version, "legacy"),
    entryId: account.version > 0 ? `${account.uid}_v${account.version}` : null,
    changed: true,
  };
}

function remember(book: LotBook, lot: Lot): void {
  book.byId.set(lot.id, lot);
}

/**
 * A lot that does not exist yet: the target of an addition (its fields are
 * set when credits are added), or the legacy lot of a user who had nothing
 * when lots began, to which a refund of an older entry returns.
 */
function emptyLot(db: Firestore, account: LotAccount, id: string): Lot {
  const legacy = legacyLot(db, { uid: account.uid, balance: 0, held: 0, version: account.version });
  return { ...legacy, id, ref: lotRef(db, id), changed: false, status: "exhausted" };
}

function lotFrom(ref: DocumentReference, data: Record<string, unknown>): Lot {
  const expires = data.expires_at as { toMillis(): number } | null | undefined;
  return {
    id: ref.id,
    ref,
    exists: true,
    source: data.source as LotSource,
    priority: Number(data.priority),
    expiresAt: expires ? expires.toMillis() : null,
    amount: Number(data.amount),
    remaining: Number(data.remaining),
    held: Number(data.held),
    expired: Number(data.expired ?? 0),
    status: data.status as LotStatus,
    burnKey: String(data.burn_key),
    entryId: (data.entry_id as string | null) ?? null,
    changed: false,
  };
}

/** A lot whose expiry has passed (or that was expired): it never pays, and credits returned to it expire. */
function lapsed(book: LotBook, lot: Lot): boolean {
  return lot.status === "expired" || (lot.expiresAt !== null && lot.expiresAt <= book.now);
}

function payable(book: LotBook, lot: Lot): boolean {
  return lot.status === "active" && !lapsed(book, lot);
}

/** Unheld credits of the lots read so far that may pay now. */
function drawable(book: LotBook): number {
  return book.ordered.reduce((sum, lot) => sum + (payable(book, lot) ? lot.remaining - lot.held : 0), 0);
}

export class TooManyLots extends DomainError {
  constructor(required: number, covered: number) {
    super(
      "failed-precondition",
      `This change would draw from more than ${MAX_LOTS_PER_CHANGE} credit lots; ${covered} of ${required} credits were found in them.`,
      { reason: "too-many-lots", max_lots: MAX_LOTS_PER_CHANGE, required, covered },
    );
  }
}

/**
 * Applies `move` to the lots read (in memory) for an entry at `version`
 * (`entryId`) that changes the balance by `amount` and held by `heldDelta`,
 * for a user owing `debt`; returns the allocations. Throws, having changed
 * nothing that is written, when the lots cannot cover it.
 */
export function moveLots(
  book: LotBook,
  move: LotMove,
  amount: number,
  heldDelta: number,
  version: number,
  entryId: string,
  debt = 0,
): LotOutcome {
  const outcome: LotOutcome = { allocations: [], heldAllocations: [], lapsed: [], debtDelta: 0 };
  switch (move.kind) {
    case "add": {
      if (amount <= 0) throw new LedgerConflict("Only a positive amount adds a lot.");
      // A debt left by a clawback is paid first; only the rest becomes spendable credits in a lot.
      const settled = Math.min(Math.max(debt, 0), amount);
      outcome.debtDelta = -settled;
      const added = amount - settled;
      if (added === 0) return outcome;
      const lot = known(book, lotIdOf(book.uid, move.source, move.priority, move.expiresAt));
      if (!lot.exists && !lot.changed) describeNewLot(lot, move, version, entryId);
      if (lapsed(book, lot)) throw new LedgerConflict("Credits cannot be added to a lot that has expired.");
      lot.amount += added;
      lot.remaining += added;
      lot.status = "active";
      lot.changed = true;
      outcome.allocations.push({ lot_id: lot.id, amount: added });
      return outcome;
    }
    case "clawback": {
      if (amount >= 0) throw new LedgerConflict("A clawback takes a positive number of credits.");
      let rest = -amount;
      // Every active lot gives back its unheld credits, also one past its expiry that retention has not expired
      // yet: left there, they would expire after the clawback had taken as much from other lots or made it debt,
      // so the user would lose them twice (and debt would stand beside credits still in a lot).
      const take = (lot: Lot) => {
        if (rest === 0 || lot.status !== "active") return;
        const part = Math.min(lot.remaining - lot.held, rest);
        if (part <= 0) return;
        lot.remaining -= part;
        lot.changed = true;
        if (lot.remaining === 0) lot.status = "exhausted";
        rest -= part;
        outcome.allocations.push({ lot_id: lot.id, amount: part });
      };
      for (const id of new Set(move.first)) take(known(book, id));
      for (const lot of inBurnOrder(book)) take(lot);
      // Held credits stay with their running jobs; what is missing is owed.
      outcome.debtDelta = rest;
      return outcome;
    }
    case "draw": {
      const take = Math.max(0, -amount);
      const reserve = Math.max(0, heldDelta);
      const parts = drawInOrder(book, take + reserve);
      for (const { lot, amount: part } of parts) {
        if (take > 0) lot.remaining -= part;
        else lot.held += part;
        lot.changed = true;
        if (lot.remaining === 0) lot.status = "exhausted";
        (take > 0 ? outcome.allocations : outcome.heldAllocations).push({ lot_id: lot.id, amount: part });
      }
      return outcome;
    }
    case "settle": {
      let toCapture = Math.max(0, -amount);
      for (const part of move.held) {
        const lot = known(book, part.lot_id);
        if (lot.held < part.amount) throw new LedgerConflict(`Lot ${lot.id} holds less than its hold reserved.`);
        lot.held -= part.amount;
        const captured = Math.min(part.amount, toCapture);
        toCapture -= captured;
        lot.remaining -= captured;
        lot.changed = true;
        outcome.heldAllocations.push({ lot_id: lot.id, amount: part.amount });
        if (captured > 0) outcome.allocations.push({ lot_id: lot.id, amount: captured });
        if (part.amount > captured && lapsed(book, lot)) outcome.lapsed.push(lot.id);
        // An expired lot stays expired; another is exhausted once nothing remains in it.
        if (lot.status !== "expired") lot.status = lot.remaining === 0 ? "exhausted" : "active";
      }
      if (toCapture > 0) throw new LedgerConflict("A capture cannot take more than its hold reserved.");
      return outcome;
    }
    case "return": {
      for (const part of move.to) {
        const lot = known(book, part.lot_id);
        // A return restores credits: `remaining` grows, `amount` (what was added) does not.
        lot.remaining += part.amount;
        lot.changed = true;
        outcome.allocations.push({ lot_id: lot.id, amount: part.amount });
        if (lapsed(book, lot)) outcome.lapsed.push(lot.id);
        else lot.status = "active";
      }
      return outcome;
    }
    case "lapse": {
      const lot = known(book, move.lotId);
      const expiring = -amount;
      if (expiring !== lot.remaining - lot.held)
        throw new LedgerConflict(`Lot ${lot.id} expires exactly its unheld credits.`);
      lot.remaining -= expiring;
      lot.expired += expiring;
      lot.status = "expired";
      lot.changed = true;
      if (expiring > 0) outcome.allocations.push({ lot_id: lot.id, amount: expiring });
      return outcome;
    }
  }
}

/** A lot read in this transaction (reading is the caller's first phase; a miss is a programming error). */
function known(book: LotBook, id: string): Lot {
  const lot = book.byId.get(id);
  if (!lot) throw new Error(`credit lot ${id} was not read in this transaction`);
  return lot;
}

function describeNewLot(lot: Lot, move: Extract<LotMove, { kind: "add" }>, version: number, entryId: string): void {
  lot.source = move.source;
  lot.priority = move.priority;
  lot.expiresAt = move.expiresAt ? move.expiresAt.getTime() : null;
  lot.burnKey = burnKeyOf(move.priority, lot.expiresAt, version, move.source);
  lot.entryId = entryId;
}

/** A lot's credits that may expire now: all it still has except what open holds reserve. */
export function unheldOf(book: LotBook, lotId: string): number {
  const lot = known(book, lotId);
  return lot.remaining - lot.held;
}

/** Credits that have expired from the lot so far. */
export function expiredOf(book: LotBook, lotId: string): number {
  return known(book, lotId).expired;
}

/** Whether the lot is past its expiry (or expired). */
export function isLapsed(book: LotBook, lotId: string): boolean {
  return lapsed(book, known(book, lotId));
}

/** A lot's terms (source, priority, expiry) and whether it is past its expiry; null for a lot that does not exist. */
export function lotTermsOf(
  book: LotBook,
  lotId: string,
): { source: LotSource; priority: number; expiresAt: Date | null; lapsed: boolean } | null {
  const lot = known(book, lotId);
  if (!lot.exists) return null;
  return {
    source: lot.source,
    priority: lot.priority,
    expiresAt: lot.expiresAt === null ? null : new Date(lot.expiresAt),
    lapsed: lapsed(book, lot),
  };
}

/** Marks a lot expired when it has nothing unheld left to expire (no entry needed). */
export function markExpired(book: LotBook, lotId: string): void {
  const lot = known(book, lotId);
  lot.status = "expired";
  lot.changed = true;
}

/** Takes `need` unheld credits from payable lots in burn order; refuses if they do not cover it. */
function drawInOrder(book: LotBook, need: number): Array<{ lot: Lot; amount: number }> {
  const ordered = inBurnOrder(book);
  const parts: Array<{ lot: Lot; amount: number }> = [];
  let rest = need;
  for (const lot of ordered) {
    if (rest === 0) break;
    if (!payable(book, lot)) continue;
    const part = Math.min(lot.remaining - lot.held, rest);
    if (part <= 0) continue;
    parts.push({ lot, amount: part });
    rest -= part;
  }
  if (rest > 0) {
    if (!book.complete && book.scanned >= MAX_LOTS_PER_CHANGE) throw new TooManyLots(need, need - rest);
    throw new InsufficientCredits(need - rest, need);
  }
  return parts;
}

/** The active lots read, in burn order. */
function inBurnOrder(book: LotBook): Lot[] {
  return [...book.ordered].sort((a, b) => (a.burnKey < b.burnKey ? -1 : a.burnKey > b.burnKey ? 1 : 0));
}

/** Writes every lot the transaction changed (after all its reads). */
export function lotWrites(tx: Transaction, book: LotBook): void {
  const { FieldValue, Timestamp } = firestoreValues();
  for (const lot of book.byId.values()) {
    if (!lot.changed) continue;
    const state = {
      amount: lot.amount,
      remaining: lot.remaining,
      held: lot.held,
      expired: lot.expired,
      status: lot.status,
      updated_at: FieldValue.serverTimestamp(),
    };
    if (lot.exists) {
      tx.update(lot.ref, state);
    } else {
      tx.set(lot.ref, {
        user_id: book.uid,
        source: lot.source,
        priority: lot.priority,
        expires_at: lot.expiresAt === null ? null : Timestamp.fromMillis(lot.expiresAt),
        burn_key: lot.burnKey,
        entry_id: lot.entryId,
        created_at: FieldValue.serverTimestamp(),
        ...state,
      });
      lot.exists = true;
    }
    lot.changed = false;
  }
}

/**
 * Which lots a refund of `amount` returns to: the original entry's allocations
 * (the legacy lot for an entry from before lots), last-drawn first, after
 * what earlier refunds (`alreadyRefunded`) returned. Last-drawn first gives
 * back the credits that would have lasted longest.
 */
export function refundAllocations(
  uid: string,
  original: Allocation[] | undefined,
  originalAmount: number,
  alreadyRefunded: number,
  amount: number,
): Allocation[] {
  const from = original && original.length > 0 ? original : [{ lot_id: legacyLotId(uid), amount: originalAmount }];
  const parts: Allocation[] = [];
  let skip = alreadyRefunded;
  let rest = amount;
  for (const part of [...from].reverse()) {
    if (rest === 0) break;
    const open = part.amount - Math.min(skip, part.amount);
    skip -= part.amount - open;
    const give = Math.min(open, rest);
    if (give > 0) parts.push({ lot_id: part.lot_id, amount: give });
    rest -= give;
  }
  if (rest > 0) throw new LedgerConflict("A refund cannot return more than its entry took.");
  return parts;
}

/** A hold's reservation by lot; a hold placed before lots reserved from the legacy lot. */
export function heldAllocationsOf(uid: string, allocations: unknown, amount: number): Allocation[] {
  if (Array.isArray(allocations) && allocations.length > 0) return allocations as Allocation[];
  return amount > 0 ? [{ lot_id: legacyLotId(uid), amount }] : [];
}
