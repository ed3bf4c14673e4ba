/**
 * Credit packs are configuration: `config/credit_packs` `{packs: [...]}`,
 * validated on every read. An invalid document sells nothing (logged, and
 * callers get `failed-precondition`): guessing at prices is worse than not selling.
 */
import type { Firestore } from "firebase-admin/firestore";
import { DomainError, NotFound } from "../shared/errors";
import { logs } from "../shared/logs";
import { CreditPacks, type CreditPack } from "./schemas";

export const CREDIT_PACKS_PATH = { collection: "config", doc: "credit_packs" } as const;

export class CreditPacksInvalid extends DomainError {
  constructor() {
    super("failed-precondition", "Credit packs are not available right now.", { reason: "credit-packs-invalid" });
  }
}

/** The packs on sale; none when the document does not exist. */
export async function loadCreditPacks(db: Firestore): Promise<CreditPack[]> {
  const snapshot = await db.collection(CREDIT_PACKS_PATH.collection).doc(CREDIT_PACKS_PATH.doc).get();
  if (!snapshot.exists) return [];
  const parsed = CreditPacks.safeParse(snapshot.data());
  if (!parsed.success) {
    logs.creditPacksInvalid(parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; "));
    throw new CreditPacksInvalid();
  }
  return parsed.data.packs;
}

/** The pack `packId`, or `not-found`. */
export async function findCreditPack(db: Firestore, packId: string): Promise<CreditPack> {
  const pack = (await loadCreditPacks(db)).find((candidate) => candidate.pack_id === packId);
  if (!pack) throw new NotFound(`Credit pack ${packId}`);
  return pack;
}
