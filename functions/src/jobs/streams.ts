/**
 * Redis streams for workers outside Functions: `jobs:{type}` with the consumer
 * group `workers`, and `jobs:{type}:dlq` for entries delivered too often.
 * Every command goes through the bounded RedisGateway, so with Redis down
 * these fail fast with RedisUnavailable instead of waiting.
 *
 * Every XADD caps its stream (`MAXLEN ~ maxLength`): acknowledged entries stay
 * in a stream until trimmed, so without a cap streams and DLQs grow forever.
 * Redis is only an accelerator: an entry lost to a trim, a flush or a restart
 * is found missing by the sweeper (`missingEntries`) and the job sent again.
 */
import type { Redis } from "ioredis";
import type { RedisGateway } from "../adapters/redis";
import { dlqOf } from "./registry";

export const GROUP = "workers";

/** One dispatched job as a stream entry. */
export interface StreamJob {
  job_id: string;
  type: string;
  user_id: string;
  input: string;
  /** Deliveries so far including this entry (1 for the first). */
  attempt: number;
}

export async function ensureGroup(client: Redis, stream: string): Promise<void> {
  try {
    // From "0" so entries added before the group existed are delivered too.
    await client.xgroup("CREATE", stream, GROUP, "0", "MKSTREAM");
  } catch (error) {
    if (!(error instanceof Error && error.message.includes("BUSYGROUP"))) throw error;
  }
}

export function fieldsOf(job: StreamJob): string[] {
  return [
    "job_id",
    job.job_id,
    "type",
    job.type,
    "user_id",
    job.user_id,
    "input",
    job.input,
    "attempt",
    String(job.attempt),
  ];
}

export function parseFields(fields: string[]): Partial<StreamJob> {
  const map: Record<string, string> = {};
  for (let index = 0; index + 1 < fields.length; index += 2) map[fields[index]] = fields[index + 1];
  return {
    job_id: map.job_id,
    type: map.type,
    user_id: map.user_id,
    input: map.input,
    attempt: map.attempt ? Number(map.attempt) : undefined,
  };
}

/** Default cap of a stream and of its DLQ (approximate: Redis trims whole nodes). */
export const DEFAULT_STREAM_MAX_LENGTH = 10_000;

/** XADDs the job, trimming the stream to about `maxLength`; returns the entry id. */
export async function addToStream(
  redis: RedisGateway,
  stream: string,
  job: StreamJob,
  maxLength = DEFAULT_STREAM_MAX_LENGTH,
): Promise<string> {
  return redis.run(async (client) => {
    await ensureGroup(client, stream);
    const id = await client.xadd(stream, "MAXLEN", "~", maxLength, "*", ...fieldsOf(job));
    return String(id);
  });
}

/**
 * Of `entryIds`, those the stream no longer has (flushed, restarted without
 * persistence, failed over, trimmed); one pipelined XRANGE per id.
 */
export async function missingEntries(redis: RedisGateway, stream: string, entryIds: string[]): Promise<Set<string>> {
  if (entryIds.length === 0) return new Set();
  const replies = await redis.run(async (client) => {
    const pipeline = client.pipeline();
    for (const id of entryIds) pipeline.xrange(stream, id, id, "COUNT", 1);
    return (await pipeline.exec()) ?? [];
  });
  const missing = new Set<string>();
  replies.forEach(([error, reply], index) => {
    if (error) throw error;
    if (!Array.isArray(reply) || reply.length === 0) missing.add(entryIds[index]);
  });
  return missing;
}

/**
 * A worker's heartbeat for an entry it is working on: XCLAIM to itself with
 * JUSTID resets the entry's idle time without counting a delivery, so the
 * sweeper does not re-send a long job that is still being worked on. False
 * when the entry is no longer pending for anyone (acked, trimmed, re-claimed).
 */
export async function heartbeat(
  redis: RedisGateway,
  stream: string,
  consumer: string,
  entryId: string,
): Promise<boolean> {
  const claimed = await redis.run((client) => client.xclaim(stream, GROUP, consumer, 0, entryId, "JUSTID"));
  return Array.isArray(claimed) && claimed.length > 0;
}

export interface Reclaimed {
  /** Old entry id, its job and the new entry id it was queued again as. */
  requeued: Array<{ entryId: string; jobId: string; newEntryId: string }>;
  deadLettered: Array<{ entryId: string; jobId?: string }>;
  dropped: string[];
}

/**
 * Re-claims entries idle longer than `visibilityMs` (XAUTOCLAIM): each is
 * queued again as a new entry with `attempt + 1`, or moved to the DLQ once it
 * has been delivered `maxDeliveries` times. `isFinal(jobId)` drops entries of
 * jobs that are already final. Each move is one MULTI (add, ack, delete).
 */
export async function reclaimIdle(
  redis: RedisGateway,
  stream: string,
  visibilityMs: number,
  maxDeliveries: number,
  isFinal: (jobId: string) => Promise<boolean>,
  maxLength = DEFAULT_STREAM_MAX_LENGTH,
): Promise<Reclaimed> {
  const result: Reclaimed = { requeued: [], deadLettered: [], dropped: [] };
  const claimed = await redis.run(async (client) => {
    await ensureGroup(client, stream);
    const reply = (await client.xautoclaim(stream, GROUP, "sweeper", visibilityMs, "0-0", "COUNT", 100)) as [
      string,
      Array<[string, string[]] | null>,
      string[]?,
    ];
    return reply[1].filter((entry): entry is [string, string[]] => entry !== null);
  });
  for (const [entryId, fields] of claimed) {
    const job = parseFields(fields);
    const attempt = Number.isFinite(job.attempt) ? Number(job.attempt) : maxDeliveries;
    if (job.job_id && (await isFinal(job.job_id))) {
      await redis.run((client) => client.multi().xack(stream, GROUP, entryId).xdel(stream, entryId).exec());
      result.dropped.push(entryId);
    } else if (!job.job_id || attempt >= maxDeliveries) {
      await redis.run((client) =>
        client
          .multi()
          .xadd(
            dlqOf(stream),
            "MAXLEN",
            "~",
            maxLength,
            "*",
            ...fields,
            "original_id",
            entryId,
            "deliveries",
            String(attempt),
          )
          .xack(stream, GROUP, entryId)
          .xdel(stream, entryId)
          .exec(),
      );
      result.deadLettered.push({ entryId, jobId: job.job_id });
    } else {
      const next = fieldsOf({
        job_id: job.job_id,
        type: job.type ?? "",
        user_id: job.user_id ?? "",
        input: job.input ?? "{}",
        attempt: attempt + 1,
      });
      const replies = await redis.run((client) =>
        client
          .multi()
          .xadd(stream, "MAXLEN", "~", maxLength, "*", ...next)
          .xack(stream, GROUP, entryId)
          .xdel(stream, entryId)
          .exec(),
      );
      const added: unknown = replies?.[0]?.[1];
      result.requeued.push({ entryId, jobId: job.job_id, newEntryId: typeof added === "string" ? added : "" });
    }
  }
  return result;
}
