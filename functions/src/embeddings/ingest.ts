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
import { PermissionDenied } from "../shared/errors";
import { logs } from "../shared/logs";
import type { Clock } from "../shared/time";
import { EMBEDDING_TOPIC } from "./constants";
import type { DeleteInput, EmbeddingRequest, IngestInput } from "./schemas";
import { stampDelete, stampIngest } from "./sources";
import { existingTableNamed, removeGenerations } from "./store";

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
  db: Firestore;
  publish: (topic: string, message: EmbeddingRequest) => Promise<string>;
  owners: string[];
  clock: Clock;
}

export interface IngestResult {
  source_id: string;
  message_id: string;
  requested_at: number;
  generation: number;
}

/**
 * Validated input (by the callable) in; the source's next generation taken, then one message on
 * `embedding-requests` out. Should the publish fail, the generation is simply never used.
 */
export async function ingestKnowledge(
  deps: IngestDeps,
  input: IngestInput,
  caller: Caller | undefined,
): Promise<IngestResult> {
  const who = assertMayEdit(caller, deps.owners);
  const requestedAt = deps.clock.now().getTime();
  const generation = await stampIngest(deps.db, input.source_id);
  const message: EmbeddingRequest = {
    op: "ingest",
    source_id: input.source_id,
    ...(input.text !== undefined ? { text: input.text } : { uri: input.uri }),
    metadata: input.metadata ?? {},
    requested_by: who.uid,
    requested_at: requestedAt,
    generation,
  };
  const messageId = await deps.publish(EMBEDDING_TOPIC, message);
  logs.knowledgeIngestRequested({
    source_id: input.source_id,
    message_id: messageId,
    uid: who.uid,
    inline: input.text !== undefined,
  });
  return { source_id: input.source_id, message_id: messageId, requested_at: requestedAt, generation };
}

export interface DeleteDeps {
  db: Firestore;
  lance: () => Promise<Connection>;
  owners: string[];
  clock: Clock;
}

/**
 * Marks the source deleted under its next generation (sources.ts), then removes
 * its rows older than that generation. From the record commit on, searches
 * return nothing of it and requests taken before the delete can no longer
 * commit (a consumer that loses that race removes its own rows). Rows of a
 * newer ingest are left alone. Should this crash after the commit, the rows
 * left are not searchable and the next ingest or delete removes them.
 */
export async function deleteKnowledge(
  deps: DeleteDeps,
  input: DeleteInput,
  caller: Caller | undefined,
): Promise<{ source_id: string; deleted_chunks: number }> {
  const who = assertMayEdit(caller, deps.owners);
  const stamp = await stampDelete(deps.db, input.source_id, who.uid, deps.clock.now().getTime());
  let deleted = 0;
  if (stamp.table) {
    const table = await existingTableNamed(await deps.lance(), stamp.table);
    if (table) deleted = await removeGenerations(table, input.source_id, { before: stamp.generation });
  }
  logs.knowledgeDeleted({ source_id: input.source_id, uid: who.uid, chunks: deleted });
  return { source_id: input.source_id, deleted_chunks: deleted };
}
