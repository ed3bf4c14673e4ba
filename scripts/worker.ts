/**
 * The reference worker: `npm run worker -- --type podcast [--report https|pubsub] [--noop]`.
 *
 * Consumes a job type's dispatch target (its Redis stream `jobs:{type}` as
 * consumer group `workers`, or its Pub/Sub topic through the subscription
 * `{topic}-workers`), reports stages and a result (no real audio), and acks.
 * While it works on a stream entry it heartbeats it (XCLAIM JUSTID), so a
 * long job is not re-sent after the visibility timeout.
 * Reports go to the jobReport endpoint (Bearer WORKER_API_KEY) or the
 * `job-results` topic. It dedupes by job id: a job it is already working on is
 * skipped, and a report answered with `final` stops the work (cancelled,
 * expired or already done elsewhere). Tests import `startWorker`; the harness's
 * environment (REDIS_URL, FUNCTIONS_BASE_URL, PUBSUB_EMULATOR_HOST,
 * WORKER_API_KEY) is all it needs.
 */
import { randomUUID } from "node:crypto";
import type { Message, Subscription } from "@google-cloud/pubsub";
import { pubsub } from "../functions/src/adapters/pubsub";
import { RedisGateway } from "../functions/src/adapters/redis";
import { priceOf } from "../functions/src/credits/price-book";
import { jobType } from "../functions/src/jobs/registry";
import { GROUP, ensureGroup, heartbeat, parseFields } from "../functions/src/jobs/streams";

export type Verdict = { kind: "succeeded" } | { kind: "failed"; error: string };

export interface WorkerOptions {
  type: string;
  functionsBaseUrl: string;
  apiKey: string;
  redisUrl?: string;
  report?: "https" | "pubsub";
  /** Skip the stages and succeed at once (the bench's no-op worker). */
  noop?: boolean;
  /** Simulated work per stage (default 0). */
  stageDelayMs?: number;
  /**
   * How often a stream entry being worked on is heartbeated (XCLAIM JUSTID to
   * this consumer), so the sweeper does not re-send a long job; keep it well
   * below JOBS_VISIBILITY_TIMEOUT_MS. Default: a third of JOBS_VISIBILITY_TIMEOUT_MS (env; 300 s if unset).
   */
  heartbeatMs?: number;
  /** Decides each job's outcome; default: succeed. */
  decide?: (job: DispatchedJob) => Verdict;
  log?: (line: string) => void;
}

export interface DispatchedJob {
  job_id: string;
  type: string;
  user_id: string;
  input: Record<string, unknown>;
}

export interface Worker {
  /** Job ids this worker finished (reported a final outcome for). */
  finished: Set<string>;
  stop(): Promise<void>;
}

const STAGES: Record<string, Array<[string, number]>> = {
  podcast: [
    ["script", 20],
    ["voice", 60],
    ["mix", 90],
  ],
  report: [
    ["outline", 30],
    ["draft", 70],
  ],
};

export async function startWorker(options: WorkerOptions): Promise<Worker> {
  const type = jobType(options.type);
  if (!type) throw new Error(`unknown job type ${options.type}`);
  const log = options.log ?? (() => undefined);
  const finished = new Set<string>();
  const active = new Set<string>();
  let stopping = false;

  const report = async (body: Record<string, unknown>): Promise<{ final: boolean }> => {
    if (options.report === "pubsub") {
      await pubsub().topic("job-results").publishMessage({ json: body });
      return { final: false };
    }
    const response = await fetch(`${options.functionsBaseUrl}/jobReport`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${options.apiKey}` },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const json = (await response.json()) as { result?: { final: boolean }; error?: { message: string } };
    if (!response.ok) throw new Error(`jobReport: HTTP ${response.status} ${json.error?.message ?? ""}`);
    return { final: json.result?.final ?? false };
  };

  /** Runs one job to a final report; false when the server said it is already final. */
  const work = async (job: DispatchedJob): Promise<void> => {
    if (active.has(job.job_id) || finished.has(job.job_id)) return;
    active.add(job.job_id);
    try {
      const stages = options.noop ? [] : (STAGES[job.type] ?? [["work", 50] as [string, number]]);
      let seq = 0;
      const first = await report({
        kind: "progress",
        job_id: job.job_id,
        report_id: `p${seq++}`,
        stage: "started",
        pct: 0,
      });
      if (first.final) return;
      for (const [stage, pct] of stages) {
        if (options.stageDelayMs) await new Promise((resolve) => setTimeout(resolve, options.stageDelayMs));
        if ((await report({ kind: "progress", job_id: job.job_id, report_id: `p${seq++}`, stage, pct })).final) return;
      }
      const verdict = options.decide?.(job) ?? { kind: "succeeded" };
      if (verdict.kind === "failed") {
        await report({ kind: "failed", job_id: job.job_id, report_id: "final", error: verdict.error });
      } else {
        await report({
          kind: "succeeded",
          job_id: job.job_id,
          report_id: "final",
          cost: costOf(job),
          outputs: outputsOf(job),
        });
      }
      finished.add(job.job_id);
      log(`job ${job.job_id} ${verdict.kind}`);
    } finally {
      active.delete(job.job_id);
    }
  };

  const stoppers: Array<() => Promise<void>> = [];
  if (type.dispatch.kind === "stream") {
    const stream = type.dispatch.stream;
    const redis = new RedisGateway({
      url: options.redisUrl ?? "redis://127.0.0.1:6379",
      commandTimeoutMs: 2000,
      connectWaitMs: 1000,
      breaker: { failureThreshold: 1000, cooldownMs: 100 },
    });
    const consumer = `worker-${randomUUID().slice(0, 8)}`;
    const visibilityMs = Number(process.env.JOBS_VISIBILITY_TIMEOUT_MS ?? "") || 300_000;
    const heartbeatMs = options.heartbeatMs ?? Math.max(50, Math.floor(visibilityMs / 3));
    const loop = (async () => {
      while (!stopping) {
        try {
          const reply = (await redis.run(async (client) => {
            await ensureGroup(client, stream);
            return client.xreadgroup("GROUP", GROUP, consumer, "COUNT", 10, "BLOCK", 200, "STREAMS", stream, ">");
          })) as Array<[string, Array<[string, string[]]>]> | null;
          for (const [, entries] of reply ?? []) {
            for (const [entryId, fields] of entries) {
              const parsed = parseFields(fields);
              const payload = JSON.parse(parsed.input ?? "{}") as DispatchedJob;
              // While working, keep the entry ours; a lost heartbeat only risks a duplicate, which reports tolerate.
              const beat = setInterval(() => {
                heartbeat(redis, stream, consumer, entryId).catch((error: unknown) =>
                  log(`heartbeat ${entryId}: ${String(error)}`),
                );
              }, heartbeatMs);
              try {
                await work(payload);
              } finally {
                clearInterval(beat);
              }
              await redis.run((client) => client.xack(stream, GROUP, entryId));
            }
          }
        } catch (error) {
          log(`stream ${stream}: ${error instanceof Error ? error.message : String(error)}`);
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      }
    })();
    stoppers.push(async () => {
      await loop;
      await redis.close();
    });
  } else {
    const topicName = type.dispatch.topic;
    const client = pubsub();
    await client.createTopic(topicName).catch((error: { code?: number }) => {
      if (error.code !== 6) throw error;
    });
    const [subscription]: [Subscription, ...unknown[]] = await client
      .topic(topicName)
      .createSubscription(`${topicName}-workers`, { ackDeadlineSeconds: 60 })
      .catch(async (error: { code?: number }) => {
        if (error.code !== 6) throw error;
        return [client.subscription(`${topicName}-workers`)] as [Subscription];
      });
    const onMessage = (message: Message) => {
      const job = JSON.parse(message.data.toString("utf8")) as DispatchedJob;
      work(job).then(
        () => message.ack(),
        (error: unknown) => {
          log(`job ${job.job_id}: ${error instanceof Error ? error.message : String(error)}`);
          message.nack();
        },
      );
    };
    subscription.on("message", onMessage);
    subscription.on("error", (error: Error) => log(`subscription: ${error.message}`));
    stoppers.push(async () => {
      subscription.off("message", onMessage);
      await subscription.close();
    });
  }

  return {
    finished,
    async stop() {
      stopping = true;
      for (const stop of stoppers) await stop();
    },
  };
}

/** What the work really cost: a podcast's audio comes out about a fifth shorter than asked; a report costs its pages. */
function costOf(job: DispatchedJob): number {
  if (job.type === "podcast")
    return priceOf("podcast.minute", Math.max(1, Math.ceil(Number(job.input.duration_min) * 0.8)));
  if (job.type === "report") return priceOf("report.page", Number(job.input.pages));
  return 0;
}

function outputsOf(job: DispatchedJob): Record<string, string | number> {
  if (job.type === "podcast")
    return { audio_url: `memory://podcasts/${job.job_id}.mp3`, transcript_chars: String(job.input.topic).length * 40 };
  return { document_url: `memory://reports/${job.job_id}.md`, pages: Number(job.input.pages ?? 0) };
}

function argument(name: string): string | undefined {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

if (require.main === module) {
  const type = argument("type");
  if (!type) {
    process.stderr.write("usage: npm run worker -- --type podcast|report [--report https|pubsub] [--noop]\n");
    process.exit(2);
  }
  const baseUrl =
    process.env.FUNCTIONS_BASE_URL ??
    `http://127.0.0.1:5001/${process.env.GCLOUD_PROJECT ?? "demo-metered-ai"}/us-central1`;
  startWorker({
    type,
    functionsBaseUrl: baseUrl,
    apiKey: process.env.WORKER_API_KEY ?? "dev-worker-key",
    redisUrl: process.env.REDIS_URL,
    report: argument("report") === "pubsub" ? "pubsub" : "https",
    noop: process.argv.includes("--noop"),
    log: (line) => process.stdout.write(`[worker ${type}] ${line}\n`),
  }).then(
    (worker) => {
      process.stdout.write(`[worker ${type}] consuming; Ctrl-C to stop\n`);
      const stop = () => void worker.stop().then(() => process.exit(0));
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    },
    (error: unknown) => {
      process.stderr.write(`worker failed: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}
