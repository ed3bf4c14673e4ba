/**
 * The `dead_letters` collection: messages a consumer will never apply (malformed, refused, or failing past
 * their delivery limit), recorded so the message can be acked instead of redelivered forever. The one
 * writer of the collection; the jobs report consumer and the embeddings consumer record through it, with
 * one id scheme and one shape, so one query lists every poison message.
 */
import type { Firestore } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";

export const DEAD_LETTERS = "dead_letters";

export interface DeadLetter {
  /** The consumer's name (`job-report`, `embeddings`): with the message id, the document id. */
  consumer: string;
  topic: string;
  messageId: string;
  /** Why it can never apply, or the last error of a message that kept failing. */
  error: string;
  /** Deliveries made, this one included. */
  attempts: number;
  /** Whether the last failure was of a kind that could have passed on retry (a limit was reached). */
  transient: boolean;
  /** What the message was about, for the operator: e.g. `{job_id}` or `{source_id}`; null when unknown. */
  subject: Record<string, string | null>;
}

/** Records the letter; keyed by consumer and message id, so a redelivery writes the same entry again. */
export async function recordDeadLetter(db: Firestore, letter: DeadLetter): Promise<void> {
  const { FieldValue } = firestoreValues();
  await db
    .collection(DEAD_LETTERS)
    .doc(`${letter.consumer}:${letter.messageId}`.replace(/\//g, "_"))
    .set({
      consumer: letter.consumer,
      topic: letter.topic,
      message_id: letter.messageId,
      ...letter.subject,
      error: letter.error.slice(0, 1000),
      attempts: letter.attempts,
      transient: letter.transient,
      created_at: FieldValue.serverTimestamp(),
    });
}
