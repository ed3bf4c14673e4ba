/**
 * `ingestKnowledge` and `deleteKnowledge`: who may change the knowledge base,
 * and what they hand to the consumer.
 *
 * Authorization: holders of the `admin` custom claim, and the uids listed in
 * the KNOWLEDGE_OWNER_UIDS param (the knowledge base's owners). Everyone else
 * gets permission-denied and nothing is published or deleted.
 */
import type { Connection } from "@lancedb/lancedb";
import type { Firestore } from "firebase-admin/firestore";
import type { Caller } from "../shared/callable";
import { NotFound, PermissionDenied } from "../shared/errors";
import { logs } from "../shared/logs";
import type { Clock } from "../shared/time";
import { EMBEDDING_TOPIC, KNOWLEDGE_SOURCES } from "./constants";
import type { DeleteInput, EmbeddingRequest, IngestInput } from "./schemas";
import { sourceClause } from "./filter";
import { replaceSource } from "./store";

/** Admin claim, or a configured owner. */
export function assertMayEdit(caller: Caller | undefined, owners: string[]): Caller {
  if (caller && (caller.admin || owners.includes(caller.uid))) return caller;
  throw new PermissionDenied("Only administrators and the knowledge base's owners may change it.");
}

/** Parses the KNOWLEDGE_OWNER_UIDS param. */
export function ownerList(value: string): string[] {
  return value
    .split(",")
    .map((uid) => uid.trim())
    .filter((uid) => uid.length > 0);
}

export interface IngestDeps {
  publish: (topic: string, message: EmbeddingRequest) => Promise<string>;
  owners: string[];
  clock: Clock;
}

export interface IngestResult {
  source_id: string;
  message_id: string;
  requested_at: number;
}

/** Validated input (by the callable) in; one message on `embedding-requests` out. */
export async function ingestKnowledge(deps: IngestDeps, input: IngestInput, caller: Caller | undefined): Promise<IngestResult> {
  const who = assertMayEdit(caller, deps.owners);
  const requestedAt = deps.clock.now().getTime();
  const message: EmbeddingRequest = {
    op: "ingest",
    source_id: input.source_id,
    ...(input.text !== undefined ? { text: input.text } : { uri: input.uri }),
    metadata: input.metadata ?? {},
    requested_by: who.uid,
    requested_at: requestedAt,
  };
  const messageId = await deps.publish(EMBEDDING_TOPIC, message);
  logs.knowledgeIngestRequested({ source_id: input.source_id, message_id: messageId, uid: who.uid, inline: input.text !== undefined });
  return { source_id: input.source_id, message_id: messageId, requested_at: requestedAt };
}

export interface DeleteDeps {
  db: Firestore;
  lance: () => Promise<Connection>;
  owners: string[];
  clock: Clock;
}

/**
 * Removes a source's chunks from the table it was indexed into and marks its
 * record deleted. `deleted_at` makes the consumer ignore requests for this
 * source published before the delete, should one still be in flight.
 */
export async function deleteKnowledge(deps: DeleteDeps, input: DeleteInput, caller: Caller | undefined): Promise<{ source_id: string; deleted_chunks: number }> {
  const who = assertMayEdit(caller, deps.owners);
  const ref = deps.db.collection(KNOWLEDGE_SOURCES).doc(input.source_id);
  const snapshot = await ref.get();
  if (!snapshot.exists) throw new NotFound(`Knowledge source ${input.source_id}`);
  const table = snapshot.get("table") as string | undefined;
  let deleted = 0;
  if (table) {
    const db = await deps.lance();
    if ((await db.tableNames()).includes(table)) {
      const handle = await db.openTable(table);
      deleted = await handle.countRows(sourceClause(input.source_id));
      await replaceSource(handle, input.source_id, []);
    }
  }
  await ref.set(
    { status: "deleted", deleted_at: deps.clock.now().getTime(), deleted_by: who.uid, chunk_count: 0, content_hash: null, error: null },
    { merge: true },
  );
  logs.knowledgeDeleted({ source_id: input.source_id, uid: who.uid, chunks: deleted });
  return { source_id: input.source_id, deleted_chunks: deleted };
}
