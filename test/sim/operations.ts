/**
 * The simulation's operations, as a table: name, weight, precondition and a
 * plan. `plan` makes every choice (from the world's PRNG and model) at once and
 * returns the work, so two planned operations can be started together for a
 * race without their choices depending on which runs first.
 *
 * A new use case joins by adding a row here (and, if it has a fact to keep,
 * a checker in invariants.ts); see "The seeded simulation" in the README.
 */
import { adjustCredits, grantCredits, refundCredits, spendCredits } from "../../functions/src/credits/operations";
import { applyQueuedOperation } from "../../functions/src/credits/queue";
import { grantAllowances } from "../../functions/src/credits/allowances";
import { setPlan } from "../../functions/src/credits/plans";
import type { PlansConfig } from "../../functions/src/credits/schemas";
import { closeAccount } from "../../functions/src/credits/closure";
import { jobFailer } from "../../functions/src/jobs/finish";
import { recordAudit } from "../../functions/src/audit/record";
import { consumeEmbeddingRequest, type ConsumerDeps } from "../../functions/src/embeddings/consume";
import { deleteKnowledge, ingestKnowledge } from "../../functions/src/embeddings/ingest";
import type { EmbeddingRequest } from "../../functions/src/embeddings/schemas";
import { cancelJob } from "../../functions/src/jobs/cancel";
import { createJob } from "../../functions/src/jobs/create";
import { dispatchJob } from "../../functions/src/jobs/dispatch";
import { expireHolds } from "../../functions/src/jobs/expiry";
import { applyReport } from "../../functions/src/jobs/report";
import { sweepJobs } from "../../functions/src/jobs/sweep";
import type { JobReport } from "../../functions/src/jobs/schemas";
import { mirrorBalance } from "../../functions/src/mirror/balance";
import { acknowledgeAlert } from "../../functions/src/routing/alerts";
import { parseRouterConfig } from "../../functions/src/routing/config";
import { DEFAULT_RETENTION, retentionPolicies } from "../../functions/src/retention/policies";
import { runProviderHealthCheck } from "../../functions/src/routing/provider-health";
import { runTtlCleanup } from "../../functions/src/retention/runner";
import { DomainError } from "../../functions/src/shared/errors";
import type { PaymentDraft } from "../../functions/src/payments/payment";
import { applyStripeEvent } from "../../functions/src/payments/webhook";
import { watchRpcs } from "../support/rpcs";
import { control, waitFor } from "../support/suite";
import {
  DAY,
  HOUR,
  MAX_DELIVERIES,
  POISON,
  SWEEP,
  gate,
  type EmbeddingMessage,
  type QueueOp,
  type SimPayment,
  type SimSource,
  type SimStripeDelivery,
  type World,
} from "./world";

export interface Planned {
  detail: string;
  run: () => Promise<string>;
}

export interface Operation {
  name: string;
  weight: number;
  /** False when the operation has nothing to act on now. */
  when: (w: World) => boolean;
  plan: (w: World) => Planned;
  /** False for operations that must not run beside another (they change the world under both). */
  racy?: boolean;
}

const ADMIN = "sim-admin";
/** Stripe retries an event for three days; after that the sim stops owing it. */
const STRIPE_RETRY_MS = 3 * DAY;
/** The packs the sim sells: one as every purchase (priority 80, never expires), one expiring and burning early. */
const SIM_PACKS = [
  { pack_id: "small", credits: 40, amount: 400, expires_after_days: null, priority: null },
  { pack_id: "month", credits: 90, amount: 700, expires_after_days: 2, priority: 30 },
] as const;

/** A Stripe event about `payment` (the shapes the webhook reads), owed from now. */
function sendStripe(w: World, payment: SimPayment, type: string, object: Record<string, unknown>): SimStripeDelivery {
  const delivery = { payment, event: { id: w.id("evt"), type, data: { object } }, sentAt: w.clock.now().getTime() };
  w.stripeDeliveries.push(delivery);
  return delivery;
}

function chargeOf(payment: SimPayment): Record<string, unknown> {
  return {
    id: `ch_${payment.paymentIntent}`,
    object: "charge",
    payment_intent: payment.paymentIntent,
    amount: payment.amount,
    amount_refunded: payment.refunded,
    currency: "usd",
  };
}

/** What a delivered event tells the model of what the webhook has been told. */
function learnDelivered(delivery: SimStripeDelivery): void {
  const { payment, event } = delivery;
  const object = event.data.object;
  if (event.type === "checkout.session.completed") payment.delivered.paid = true;
  if (event.type === "charge.refunded")
    payment.delivered.refunded = Math.max(payment.delivered.refunded, Number(object.amount_refunded));
  if (event.type === "charge.dispute.funds_withdrawn") payment.delivered.withdrawn = true;
  if (event.type === "charge.dispute.funds_reinstated") payment.delivered.reinstated = true;
}
const PUBSUB_RETENTION_MS = 7 * DAY;

/**
 * Retention as deployed, but alerts become due after 2 days instead of 90: the clock's day-sized jumps then
 * reach an acknowledged alert of a provider that is still down (hole 5) in a few seeds, where 90 days took
 * a provider down, its alert acknowledged and a 91-day jump strung together, which no 40 seeds did.
 */
const SIM_RETENTION = { ...DEFAULT_RETENTION, alertsDays: 2 };

/** Small allowances that roll over, so months in the sim meet spends, expiry and rollover. */
const SIM_PLANS: PlansConfig = {
  plans: {
    free: { monthly_allowance: 20, rollover: { max: 10 } },
    pro: { monthly_allowance: 60, allowance_priority: 15, rollover: { max: 40 } },
  },
};
const FEATURES = ["chat.message", "chat.long_context", "image.generate", "tts.1k_chars"] as const;
const PHRASES = [
  "alpine lakes and glaciers",
  "sourdough starter feeding",
  "orbital mechanics primer",
  "tidal pools of the coast",
  `${POISON} broken document`,
  `${POISON} corrupt upload`,
];

/** One provider health check as the schedule runs it, with the sim's providers and probe; returns the statuses. */
async function checkHealth(w: World): Promise<string> {
  w.after.healthChecked = true;
  w.after.lastProbe.clear();
  const config = parseRouterConfig({
    providers: w.providers.map((provider) => ({
      name: provider.name,
      probe_url: "http://127.0.0.1:9/probe",
      models: [{ id: `${provider.name}-model`, task_types: ["chat"], cost_per_1k_tokens: 1 }],
    })),
    failures_to_down: 2,
    error_window: 4,
    degraded_error_rate: 0.5,
    slow_ms: 500,
    ewma_alpha: 0.5,
    cooldown_ms: 20 * 60_000,
  });
  const outcome = await runProviderHealthCheck({
    db: w.db,
    clock: w.clock,
    config,
    probe: w.probe,
    probeTimeoutMs: 1000,
  });
  for (const provider of outcome.providers) if (provider.alert_id) w.alerts.push(provider.alert_id);
  return (
    outcome.providers.map((provider) => `${provider.provider}:${provider.status}`).join(" ") +
    ` quotas ${outcome.quotas_reset}`
  );
}

/** The operations spendAcross runs between a spend's reads and its guarded commit: those that change credits. */
const ACROSS = new Set([
  "grant",
  "spend",
  "refund",
  "adjust",
  "createJob",
  "cancelJob",
  "workerReport",
  "sweep",
  "setPlan",
  "grantAllowances",
  "retention",
  "deliverStripe",
  "deliverQueue",
]);

type SpendRequest = { key: string; feature: (typeof FEATURES)[number]; quantity: number };

/**
 * What spendAcross runs between a spend's reads and its commit: a grant to the same user, another spend of the
 * user, the same request again (through `spendAs`), or any operation in ACROSS.
 */
function planAcross(
  w: World,
  user: World["users"][number],
  spend: SpendRequest,
  spendAs: (request: SpendRequest) => Promise<string>,
): Planned {
  switch (w.rng.weighted([2, 2, 1, 2])) {
    case 0: {
      const amount = w.rng.int(1, 30);
      const source = w.rng.pick(["grant", "promo"] as const);
      const key = w.id("grant");
      return {
        detail: `a grant: ${user.uid} +${amount} ${source}`,
        run: () =>
          outcomeOf(async () => {
            const result = await grantCredits(w.creditDeps(), ADMIN, {
              user_id: user.uid,
              amount,
              type: "grant",
              source,
              reason: "sim grant across a spend",
              idempotency_key: key,
            });
            user.deleted = false;
            return `v${result.version} balance ${result.balance} lot ${result.lot_id}`;
          }),
      };
    }
    case 1: {
      const another = { key: w.id("spend"), feature: w.rng.pick(FEATURES), quantity: w.rng.int(1, 4) };
      user.spendKeys.push(another);
      return { detail: `another spend: key ${another.key}`, run: () => spendAs(another) };
    }
    case 2:
      return { detail: "the same request", run: () => spendAs(spend) };
    default: {
      const candidates = OPERATIONS.filter((operation) => ACROSS.has(operation.name) && operation.when(w));
      const operation = candidates[w.rng.weighted(candidates.map((candidate) => candidate.weight))];
      const planned = operation.plan(w);
      return { detail: `${operation.name}: ${planned.detail}`, run: planned.run };
    }
  }
}

/** Turns a use case's answer or refusal into the step log's outcome; anything else is logged, not hidden. */
async function outcomeOf(work: () => Promise<string>): Promise<string> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof DomainError) return `refused ${error.code}: ${error.message}`;
    return `error: ${(error instanceof Error ? error.message : String(error)).split("\n")[0]}`;
  }
}

function take<T>(w: World, pool: T[], keep: number): T {
  const index = w.rng.int(0, pool.length - 1);
  const item = pool[index];
  // Kept items are delivered again later: duplicates, and late ones.
  if (!w.rng.chance(keep)) pool.splice(index, 1);
  return item;
}

const consumerDeps = (w: World): ConsumerDeps => ({
  db: w.db,
  lance: w.lance,
  provider: w.embedder,
  chunking: { size: 200, overlap: 40 },
  readObject: async () => {
    throw new Error("sim: no objects");
  },
  retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
  maxDeliveries: MAX_DELIVERIES,
  platformRedelivers: true,
  indexThreshold: 100_000,
  clock: w.clock,
});

/** Delivers one embedding message and records what the checks need. */
async function deliverMessage(w: World, message: EmbeddingMessage): Promise<string> {
  // Pub/Sub keeps a message for its subscription's retention (7 days by default) and delivers nothing older: a
  // delivery after the clock jumped weeks past the publish does not happen (the consumer's counts outlive 7 days).
  if (w.clock.now().getTime() - message.request.requested_at > PUBSUB_RETENTION_MS) {
    message.outcome ??= "dropped by Pub/Sub";
    return "not delivered: older than Pub/Sub's retention";
  }
  try {
    const outcome = await consumeEmbeddingRequest(consumerDeps(w), {
      messageId: message.id,
      data: Buffer.from(JSON.stringify(message.request)),
      publishTime: w.clock.now(),
    });
    message.outcome = outcome;
    const source = w.sources.find((candidate) => candidate.id === message.sourceId)!;
    if (outcome === "indexed" || outcome === "unchanged") {
      source.newestApplied = Math.max(source.newestApplied, message.request.requested_at);
      source.newestAppliedGeneration = Math.max(source.newestAppliedGeneration, message.request.generation);
    }
    return outcome;
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    // Another delivery of the same message holding the lease is not a failure of the message.
    if (!text.includes("is being processed by another delivery")) {
      message.failures += 1;
      if (message.failures >= MAX_DELIVERIES) {
        w.violations.push(
          `embedding message ${message.id} (source ${message.sourceId}) still failed on delivery ${message.failures} (limit ${MAX_DELIVERIES}): not dead-lettered by its limit`,
        );
      }
    }
    return `threw (redelivery): ${text.split("\n")[0]}`;
  }
}

function pendingMessages(w: World): EmbeddingMessage[] {
  return w.messages.filter((message) => message.outcome === undefined);
}

/** A pair of messages for one source with different texts, older first. */
function racePairs(w: World): Array<[EmbeddingMessage, EmbeddingMessage]> {
  const pairs: Array<[EmbeddingMessage, EmbeddingMessage]> = [];
  for (const newer of w.messages) {
    for (const older of w.messages) {
      if (
        older.sourceId === newer.sourceId &&
        older.request.requested_at < newer.request.requested_at &&
        older.text !== newer.text &&
        !older.text.includes(POISON)
      )
        pairs.push([older, newer]);
    }
  }
  return pairs;
}

export const OPERATIONS: Operation[] = [
  {
    name: "grant",
    weight: 6,
    when: (w) => w.users.length > 0,
    plan: (w) => {
      const user = w.rng.pick(w.users);
      const amount = w.rng.int(1, 60);
      // Lots of every kind: sources with their priorities, some expiring within hours or days (so the clock's
      // moves make them lapse under holds, refunds and spends), a few sharing an expiry (one lot).
      const source = w.rng.pick(["grant", "grant", "promo", "purchase"] as const);
      const type = source === "purchase" ? "purchase" : "grant";
      const expiring = w.rng.chance(0.5);
      const expiresAt = expiring
        ? new Date(Math.ceil(w.clock.now().getTime() / HOUR) * HOUR + w.rng.int(1, 72) * HOUR)
        : undefined;
      const instance = w.pickInstance();
      return {
        detail: `${user.uid} +${amount} ${source}${expiresAt ? ` until ${expiresAt.toISOString()}` : ""} on instance ${instance}`,
        run: () =>
          outcomeOf(async () => {
            const result = await grantCredits(w.creditDeps(instance), ADMIN, {
              user_id: user.uid,
              amount,
              type,
              source,
              expires_at: expiresAt?.toISOString(),
              reason: "sim grant",
              idempotency_key: w.id("grant"),
            });
            // A grant creates the account again after a deletion.
            user.deleted = false;
            return `v${result.version} balance ${result.balance} lot ${result.lot_id}`;
          }),
      };
    },
  },
  {
    name: "spend",
    weight: 8,
    when: (w) => w.users.length > 0,
    plan: (w) => {
      const user = w.rng.pick(w.users);
      const replay = user.spendKeys.length > 0 && w.rng.chance(0.2);
      const spend = replay
        ? w.rng.pick(user.spendKeys)
        : { key: w.id("spend"), feature: w.rng.pick(FEATURES), quantity: w.rng.int(1, 4) };
      if (!replay) user.spendKeys.push(spend);
      const instance = w.pickInstance();
      return {
        detail: `${user.uid} ${spend.feature}×${spend.quantity} key ${spend.key}${replay ? " (replay)" : ""} on instance ${instance}`,
        run: () =>
          outcomeOf(async () => {
            const result = await spendCredits(w.creditDeps(instance), user.uid, {
              feature: spend.feature,
              quantity: spend.quantity,
              idempotency_key: spend.key,
            });
            if (!result.replayed) w.refundable.push(result.transaction_id);
            return `${result.replayed ? "replayed " : ""}v${result.version} balance ${result.balance}`;
          }),
      };
    },
  },
  {
    // A spend's first try reads outside a transaction and commits a batch guarded by what it read
    // (credits/prefetched-transaction.ts guardedAttempt): another change is run to completion between those reads
    // and that commit, the order the guards exist for. Mostly one of the same user's (a grant, another spend, the
    // same request again), else any operation that changes credits. The spend runs without the Redis lock, as it
    // does when Redis is down, so the change between is not kept waiting for it.
    name: "spendAcross",
    weight: 3,
    racy: false,
    when: (w) => w.users.length > 0,
    plan: (w) => {
      const user = w.rng.pick(w.users);
      const spend = { key: w.id("spend"), feature: w.rng.pick(FEATURES), quantity: w.rng.int(1, 4) };
      user.spendKeys.push(spend);
      const spendOf = async (request: typeof spend, deps: ReturnType<World["creditDeps"]> | { db: World["db"] }) => {
        const result = await spendCredits({ clock: w.clock, ...deps }, user.uid, {
          feature: request.feature,
          quantity: request.quantity,
          idempotency_key: request.key,
        });
        if (!result.replayed) w.refundable.push(result.transaction_id);
        return `${result.replayed ? "replayed " : ""}v${result.version} balance ${result.balance}`;
      };
      const other = planAcross(w, user, spend, (request) => outcomeOf(() => spendOf(request, w.creditDeps())));
      return {
        detail: `${user.uid} ${spend.feature}×${spend.quantity} key ${spend.key}, its commit held for ${other.detail}`,
        run: async () => {
          let between: string | undefined;
          const { result: outcome } = await watchRpcs(w.db, () => outcomeOf(() => spendOf(spend, { db: w.db })), {
            beforeGuardedCommit: async () => {
              between = await other.run();
            },
          });
          // No guarded commit (the spend was refused, or missed before committing): the other still runs.
          return between === undefined
            ? `${outcome}, no guarded commit ‖ after: ${await other.run()}`
            : `${outcome} ‖ between: ${between}`;
        },
      };
    },
  },
  {
    name: "refund",
    weight: 3,
    when: (w) => w.refundable.length > 0,
    plan: (w) => {
      const transactionId = w.rng.pick(w.refundable);
      const amount = w.rng.chance(0.5) ? undefined : w.rng.int(1, 5);
      return {
        detail: `${transactionId} ${amount ?? "all"}`,
        run: () =>
          outcomeOf(async () => {
            const result = await refundCredits(w.creditDeps(), ADMIN, {
              transaction_id: transactionId,
              amount,
              reason: "sim refund",
              idempotency_key: w.id("refund"),
            });
            return `v${result.version} balance ${result.balance}`;
          }),
      };
    },
  },
  {
    name: "adjust",
    weight: 2,
    when: (w) => w.users.length > 0,
    plan: (w) => {
      const user = w.rng.pick(w.users);
      const amount = w.rng.chance(0.5) ? w.rng.int(1, 20) : -w.rng.int(1, 20);
      return {
        detail: `${user.uid} ${amount > 0 ? "+" : ""}${amount}`,
        run: () =>
          outcomeOf(async () => {
            const result = await adjustCredits(w.creditDeps(), ADMIN, {
              user_id: user.uid,
              amount,
              reason: "sim adjust",
              idempotency_key: w.id("adjust"),
            });
            return `v${result.version} balance ${result.balance}`;
          }),
      };
    },
  },
  {
    name: "createJob",
    weight: 6,
    when: (w) => w.users.length > 0,
    plan: (w) => {
      const user = w.rng.pick(w.users);
      const podcast = w.rng.chance(0.6);
      const request = podcast
        ? {
            type: "podcast",
            input: { topic: "sim topic", duration_min: w.rng.int(1, 4) },
            idempotency_key: w.id("job"),
          }
        : { type: "report", input: { subject: "sim subject", pages: w.rng.int(1, 3) }, idempotency_key: w.id("job") };
      return {
        detail: `${user.uid} ${request.type} ${JSON.stringify(request.input)}`,
        run: () =>
          outcomeOf(async () => {
            const created = await createJob(w.creditDeps(), user.uid, request);
            w.jobs.push({ id: created.job_id, uid: user.uid, price: created.price, type: created.type, reports: 0 });
            return `job #${w.jobs.length - 1} ${created.job_id} price ${created.price}`;
          }),
      };
    },
  },
  {
    // The outbox trigger's delivery (the functions emulator also delivers it once, as in production).
    name: "dispatch",
    weight: 3,
    when: (w) => w.jobs.length > 0,
    plan: (w) => {
      const index = w.rng.int(0, w.jobs.length - 1);
      return {
        detail: `job #${index}`,
        run: () => outcomeOf(async () => (await dispatchJob(w.jobDeps(), w.jobs[index].id)).outcome),
      };
    },
  },
  {
    // A worker writes a report; it waits in the pool to be delivered (duplicated, reordered, late).
    name: "workerReport",
    weight: 6,
    when: (w) => w.jobs.length > 0,
    plan: (w) => {
      const index = w.rng.int(0, w.jobs.length - 1);
      const job = w.jobs[index];
      job.reports += 1;
      const base = { job_id: job.id, report_id: `r${job.reports}` };
      const roll = w.rng.float();
      const report: JobReport =
        roll < 0.45
          ? { ...base, kind: "progress", stage: "render", pct: w.rng.int(1, 99) }
          : roll < 0.85
            ? {
                ...base,
                kind: "succeeded",
                cost: w.rng.chance(0.15) ? job.price + w.rng.int(1, 5) : w.rng.int(0, job.price),
                outputs: { url: "sim://out" },
              }
            : { ...base, kind: "failed", error: "sim worker failure" };
      return {
        detail: `job #${index} ${report.kind} ${report.report_id}`,
        run: async () => {
          w.reports.push({ report });
          return `pool ${w.reports.length}`;
        },
      };
    },
  },
  {
    name: "deliverReport",
    weight: 8,
    when: (w) => w.reports.length > 0,
    plan: (w) => {
      const { report } = take(w, w.reports, 0.3);
      return {
        detail: `${report.job_id} ${report.kind} ${report.report_id}`,
        run: () =>
          outcomeOf(async () => {
            const result = await applyReport(w.jobDeps(), report, "worker:sim");
            return `${result.applied ? "applied" : "not applied"} → ${result.status}`;
          }),
      };
    },
  },
  {
    name: "cancelJob",
    weight: 2,
    when: (w) => w.jobs.length > 0,
    plan: (w) => {
      const index = w.rng.int(0, w.jobs.length - 1);
      const job = w.jobs[index];
      return {
        detail: `job #${index}`,
        run: () => outcomeOf(async () => (await cancelJob(w.jobDeps(), job.uid, job.id)).status),
      };
    },
  },
  {
    name: "sweep",
    weight: 5,
    when: () => true,
    plan: (w) => ({
      detail: `at ${w.clock.now().toISOString()}`,
      run: () =>
        outcomeOf(async () => {
          const redisUp = w.redisUp;
          const result = await sweepJobs(w.jobDeps(), SWEEP);
          w.after.swept = true;
          // The stream check needs a sweep that could reach Redis (other parts' errors do not matter to it).
          w.after.sweptWithRedis =
            redisUp && w.redisUp && !result.errors.some((error) => /redis|connection|stream/i.test(error));
          return JSON.stringify(result).slice(0, 300);
        }),
    }),
  },
  {
    // An admin moves a user between plans: the period's allowance at once, the difference on an upgrade.
    name: "setPlan",
    weight: 2,
    when: (w) => w.users.length > 0,
    plan: (w) => {
      const user = w.rng.pick(w.users);
      const tier = w.rng.pick(["free", "pro"]);
      return {
        detail: `${user.uid} → ${tier}`,
        run: () =>
          outcomeOf(async () => {
            await w.db.collection("config").doc("plans").set(SIM_PLANS);
            const result = await setPlan(w.creditDeps(), ADMIN, {
              user_id: user.uid,
              tier,
              idempotency_key: w.id("plan"),
            });
            user.deleted = false;
            return `${result.tier} ${result.period_start.slice(0, 7)}`;
          }),
      };
    },
  },
  {
    // The hourly allowance run; the clock's moves take it into new months (rollover included).
    name: "grantAllowances",
    weight: 2,
    when: () => true,
    plan: (w) => {
      // Small pages, queries, batches and commits at times, so the scan's and the batches' edges are crossed.
      const shape = w.rng.pick([{ pageSize: 50 }, { pageSize: 2, pagesPerQuery: 2, batchUsers: 3, commitWrites: 10 }]);
      return {
        detail: `at ${w.clock.now().toISOString()} ${JSON.stringify(shape)}`,
        run: () =>
          outcomeOf(async () => {
            const run = await grantAllowances({
              db: w.db,
              clock: w.clock,
              budgetMs: 60_000,
              ...shape,
              stateId: `sim-allowances-${w.nonce}`,
              plans: SIM_PLANS,
            });
            return `${run.period} granted ${run.granted} current ${run.current} failed ${run.failed.length}`;
          }),
      };
    },
  },
  {
    name: "retention",
    weight: 3,
    when: () => true,
    plan: (w) => ({
      detail: `at ${w.clock.now().toISOString()}`,
      run: () =>
        outcomeOf(async () => {
          const outcome = await runTtlCleanup({
            db: w.db,
            clock: w.clock,
            policies: retentionPolicies(SIM_RETENTION),
            // As wired in retention/runner.ts: job holds expire through their job.
            releaseExpiredHold: expireHolds({ rtdb: w.rtdb, redis: w.redis }),
            rtdb: () => w.rtdb,
            lance: w.lance,
            budgetMs: 60_000,
            pageSize: 200,
            stateId: `sim-${w.nonce}`,
          });
          return outcome.policies
            .map((policy) => `${policy.policy}:${policy.applied}${policy.error ? "!" : ""}`)
            .join(" ");
        }),
    }),
  },
  {
    // A Checkout payment paid at Stripe: the payment as createCheckoutSession records it, and its paid
    // `checkout.session.completed` owed to the webhook (granted through purchaseTransaction when delivered).
    name: "buyPack",
    weight: 5,
    when: (w) => w.users.length > 0,
    plan: (w) => {
      const user = w.rng.pick(w.users);
      const pack = w.rng.pick(SIM_PACKS);
      const payment: SimPayment = {
        id: w.id("pay"),
        uid: user.uid,
        sessionId: w.id("cs"),
        paymentIntent: w.id("pi"),
        credits: pack.credits,
        amount: pack.amount,
        refunded: 0,
        delivered: { paid: false, refunded: 0, withdrawn: false, reinstated: false },
      };
      return {
        detail: `${user.uid} ${pack.pack_id} ${payment.id}`,
        run: () =>
          outcomeOf(async () => {
            const draft: PaymentDraft = {
              user_id: user.uid,
              pack_id: pack.pack_id,
              credits: pack.credits,
              amount: pack.amount,
              currency: "usd",
              expires_after_days: pack.expires_after_days,
              priority: pack.priority,
              status: "pending",
              provider: "stripe",
              checkout_session_id: payment.sessionId,
              checkout_url: null,
              payment_intent: null,
              save_payment_method: false,
              request_fingerprint: "sim",
              transaction_id: null,
            };
            await w.db
              .collection("payments")
              .doc(payment.id)
              .set({ ...draft, created_at: w.clock.now() });
            w.payments.push(payment);
            sendStripe(w, payment, "checkout.session.completed", {
              id: payment.sessionId,
              object: "checkout.session",
              payment_status: "paid",
              amount_total: payment.amount,
              currency: "usd",
              payment_intent: payment.paymentIntent,
            });
            return "paid at Stripe";
          }),
      };
    },
  },
  {
    // A partial or full refund at Stripe: `charge.refunded` with the cumulative amount, owed to the webhook
    // (possibly before the payment's own checkout event).
    name: "refundPayment",
    weight: 4,
    when: (w) => w.payments.some((payment) => payment.refunded < payment.amount),
    plan: (w) => {
      const payment = w.rng.pick(w.payments.filter((candidate) => candidate.refunded < candidate.amount));
      const full = w.rng.chance(0.3);
      const amount = full ? payment.amount - payment.refunded : w.rng.int(1, payment.amount - payment.refunded);
      return {
        detail: `${payment.id} ${full ? "in full" : `+${amount}`}`,
        run: async () => {
          // Stripe refunds at most what is left of the charge: two refunds planned from the same state and raced
          // may find less left than planned (the second is then cut down, or refused).
          const left = payment.amount - payment.refunded;
          if (left === 0) return "refused at Stripe: nothing left to refund";
          payment.refunded += full ? left : Math.min(amount, left);
          sendStripe(w, payment, "charge.refunded", chargeOf(payment));
          return `refunded ${payment.refunded} of ${payment.amount}`;
        },
      };
    },
  },
  {
    // A dispute opened (funds withdrawn) or won (funds reinstated) at Stripe, owed to the webhook.
    name: "disputePayment",
    weight: 3,
    when: (w) => w.payments.some((payment) => payment.dispute?.state !== "reinstated"),
    plan: (w) => {
      const payment = w.rng.pick(w.payments.filter((candidate) => candidate.dispute?.state !== "reinstated"));
      const win = payment.dispute !== undefined;
      return {
        detail: `${payment.id} ${win ? "won" : "opened"}`,
        run: async () => {
          payment.dispute = win
            ? { id: payment.dispute!.id, state: "reinstated" }
            : { id: w.id("dp"), state: "withdrawn" };
          sendStripe(w, payment, win ? "charge.dispute.funds_reinstated" : "charge.dispute.funds_withdrawn", {
            id: payment.dispute.id,
            object: "dispute",
            payment_intent: payment.paymentIntent,
            amount: payment.amount,
            currency: "usd",
          });
          return payment.dispute.state;
        },
      };
    },
  },
  {
    // Stripe delivering one owed event to the webhook: any order, duplicated (kept for later), racing others;
    // one older than Stripe's three days of retries is no longer sent.
    name: "deliverStripe",
    weight: 10,
    when: (w) => w.stripeDeliveries.length > 0,
    plan: (w) => {
      const now = w.clock.now().getTime();
      w.stripeDeliveries = w.stripeDeliveries.filter((delivery) => now - delivery.sentAt <= STRIPE_RETRY_MS);
      if (w.stripeDeliveries.length === 0) return { detail: "nothing owed", run: () => Promise.resolve("none") };
      const delivery = take(w, w.stripeDeliveries, 0.3);
      return {
        detail: `${delivery.event.type} ${delivery.event.id} ${delivery.payment.id}`,
        run: () =>
          outcomeOf(async () => {
            const outcome = await applyStripeEvent({ db: w.db, lock: w.redis, clock: w.clock }, delivery.event).catch(
              (error: unknown) => {
                // Answered 5xx: Stripe sends it again.
                w.stripeDeliveries.push(delivery);
                throw error;
              },
            );
            learnDelivered(delivery);
            // A purchase re-opens a closed account.
            if (outcome === "granted") {
              const user = w.users.find((candidate) => candidate.uid === delivery.payment.uid);
              if (user) user.deleted = false;
            }
            return outcome;
          }),
      };
    },
  },
  {
    name: "advanceClock",
    weight: 6,
    when: () => true,
    plan: (w) => {
      const kind = w.rng.weighted([6, 4, 2, 2]);
      const ms = [w.rng.int(1, 60) * 1000, w.rng.int(5, 40) * 60_000, w.rng.int(1, 8) * DAY, w.rng.int(91, 100) * DAY][
        kind
      ];
      return {
        detail: `+${Math.round(ms / 1000)} s`,
        run: async () => {
          w.clock.advance(ms);
          return w.clock.now().toISOString();
        },
      };
    },
    racy: false,
  },
  {
    // A client writes an operation to its RTDB queue; the create event waits in the pool.
    name: "queueOp",
    weight: 4,
    when: (w) => w.users.length > 0,
    plan: (w) => {
      const user = w.rng.pick(w.users);
      const op: QueueOp = {
        uid: user.uid,
        opId: w.id("op"),
        value: {
          type: "spend",
          feature: w.rng.pick(FEATURES),
          quantity: w.rng.int(1, 6),
          created_at: w.clock.now().getTime(),
        },
      };
      return {
        detail: `${user.uid} ${op.opId} ${JSON.stringify(op.value)}`,
        run: () =>
          outcomeOf(async () => {
            await w.rtdb.ref(`operation_queues/${op.uid}/${op.opId}`).set(op.value);
            w.queueOps.push(op);
            w.queueDeliveries.push(op);
            return "queued";
          }),
      };
    },
  },
  {
    // The queue trigger's delivery of the original create event (duplicated, late: after top-ups).
    name: "deliverQueue",
    weight: 5,
    when: (w) => w.queueDeliveries.length > 0,
    plan: (w) => {
      const op = take(w, w.queueDeliveries, 0.5);
      return {
        detail: `${op.uid} ${op.opId}`,
        run: () =>
          outcomeOf(async () =>
            applyQueuedOperation({ db: w.db, rtdb: w.rtdb, lock: w.redis, clock: w.clock }, op.uid, op.opId, op.value),
          ),
      };
    },
  },
  {
    // The users/{uid} trigger's delivery to the balance mirror.
    name: "deliverMirror",
    weight: 5,
    when: (w) => w.mirrorDeliveries.length > 0,
    plan: (w) => {
      const delivery = take(w, w.mirrorDeliveries, 0.3);
      return {
        detail: `${delivery.uid} ${delivery.state ? `v${delivery.state.version}` : "deleted"}`,
        run: () => outcomeOf(() => mirrorBalance({ db: w.db, rtdb: w.rtdb }, delivery.uid, delivery.state)),
      };
    },
  },
  {
    // The audit trigger's delivery of a users/{uid} change.
    name: "deliverAudit",
    weight: 3,
    when: (w) => w.auditDeliveries.length > 0,
    plan: (w) => {
      const delivery = take(w, w.auditDeliveries, 0.3);
      return {
        detail: delivery.eventId,
        run: () =>
          outcomeOf(async () => {
            const created = await recordAudit(
              w.db,
              {
                eventId: delivery.eventId,
                path: `users/${delivery.uid}`,
                time: w.clock.now().toISOString(),
                before: delivery.before,
                after: delivery.after,
              },
              0,
            );
            if (!w.deliveredAudits.includes(delivery)) w.deliveredAudits.push(delivery);
            return created ? "recorded" : "duplicate";
          }),
      };
    },
  },
  {
    // Deleting users/{uid} (an operator, an account-deletion hook); the onUserDeleted event waits in the pool.
    name: "deleteUser",
    weight: 2,
    // Two users always stay, so a seed keeps jobs from live owners beside the deleted ones.
    when: (w) => w.liveUsers().length > 2,
    plan: (w) => {
      // Most often the owner of the newest job, so deletions meet open jobs (the sweeper's hard case).
      const newest = w.jobs.at(-1);
      const owner =
        newest && w.rng.chance(0.6) ? w.liveUsers().find((candidate) => candidate.uid === newest.uid) : undefined;
      const user = owner ?? w.rng.pick(w.liveUsers());
      return {
        detail: user.uid,
        run: () =>
          outcomeOf(async () => {
            // The event carries the deleted document, whose ledger_version tells closeAccount which work was the closed account's.
            const userDoc = w.db.collection("users").doc(user.uid);
            const closedAtVersion = await w.db.runTransaction(async (tx) => {
              const version = Number((await tx.get(userDoc)).get("ledger_version") ?? 0);
              tx.delete(userDoc);
              return version;
            });
            user.deleted = true;
            user.everDeleted = true;
            w.mirrorDeliveries.push({ uid: user.uid });
            w.closureDeliveries.push({ uid: user.uid, closedAtVersion });
            return "deleted";
          }),
      };
    },
    racy: false,
  },
  {
    // The onUserDeleted trigger's delivery (duplicated, late: after the user was re-created by a grant).
    name: "deliverClosure",
    weight: 3,
    when: (w) => w.closureDeliveries.length > 0,
    plan: (w) => {
      const delivery = take(w, w.closureDeliveries, 0.3);
      return {
        detail: `${delivery.uid} deleted at v${delivery.closedAtVersion}`,
        run: () =>
          outcomeOf(async () => {
            const result = await closeAccount(
              { db: w.db, failJob: jobFailer({ db: w.db, rtdb: w.rtdb }) },
              delivery.uid,
              delivery.closedAtVersion,
            );
            // The trigger throws (and is retried) when something was not settled; a retry is a later delivery.
            if (result.errors.length > 0) {
              w.closureDeliveries.push(delivery);
              return `not fully closed: ${result.errors.join("; ").slice(0, 200)}`;
            }
            return `jobs failed ${result.jobsFailed}, holds released ${result.holdsReleased}`;
          }),
      };
    },
  },
  {
    // Hole 2's fault: an operator's console edit or a bad migration leaves an open job pointing at a hold that does
    // not exist, so nothing can finish it (finishJob answers NotFound). The sweeper must set it aside with a reason
    // and go on with the jobs behind it in deadline order; the job's real hold stays open and counted, untouched.
    name: "poisonJob",
    weight: 2,
    when: (w) => w.jobs.some((job) => !job.poisoned),
    plan: (w) => {
      const candidates = w.jobs.filter((candidate) => !candidate.poisoned);
      // Most often the newest, the likeliest to be still open.
      const job = w.rng.chance(0.7) ? candidates.at(-1)! : w.rng.pick(candidates);
      return {
        detail: `job #${w.jobs.indexOf(job)} ${job.id}`,
        run: () =>
          outcomeOf(async () => {
            const ref = w.db.collection("jobs").doc(job.id);
            const poisoned = await w.db.runTransaction(async (tx) => {
              const status = (await tx.get(ref)).get("status") as string | undefined;
              if (status !== "queued" && status !== "running") return false;
              tx.update(ref, { hold_id: `gone_${job.id}` });
              return true;
            });
            if (poisoned) job.poisoned = true;
            return poisoned ? "hold_id now names no hold" : "already final";
          }),
      };
    },
    racy: false,
  },
  {
    // Hole 6's interleaving, made to happen: a stream job is dispatched, Redis loses it (a flush, a restart without
    // persistence), then the sweeper runs with Redis up. The check after the step wants the job back on its stream.
    name: "loseDispatched",
    weight: 2,
    when: (w) => w.redisUp && w.jobs.some((job) => job.type === "podcast"),
    plan: (w) => {
      const podcasts = w.jobs.filter((job) => job.type === "podcast");
      // Most often the newest, which is the likeliest to be still queued.
      const job = w.rng.chance(0.7) ? podcasts.at(-1)! : w.rng.pick(podcasts);
      return {
        detail: `job #${w.jobs.indexOf(job)} ${job.id}`,
        run: () =>
          outcomeOf(async () => {
            const dispatched = await dispatchJob(w.jobDeps(), job.id);
            const before = (await w.db.collection("jobs").doc(job.id).get()).data();
            await w.redis.run((client) => client.flushall());
            const result = await sweepJobs(w.jobDeps(), SWEEP);
            w.after.swept = true;
            w.after.sweptWithRedis = w.redisUp && result.errors.length === 0;
            // Only a job that was queued and dispatched (by this step or earlier) before the flush was lost by it.
            const lost =
              before?.status === "queued" &&
              (before.dispatch as { state?: string } | undefined)?.state === "dispatched";
            if (lost && w.after.sweptWithRedis) w.after.lostAndSwept.push(job.id);
            return `dispatch ${dispatched.outcome}, flushed${lost ? " (lost)" : ""}, swept resent ${result.resent}${result.errors.length > 0 ? ` errors ${result.errors.join("; ").slice(0, 200)}` : ""}`;
          }),
      };
    },
    racy: false,
  },
  {
    name: "redisStop",
    weight: 1,
    when: (w) => w.redisUp,
    plan: (w) => ({
      detail: "",
      run: async () => {
        await control("redis/stop");
        w.redisUp = false;
        return "stopped";
      },
    }),
    racy: false,
  },
  {
    name: "redisStart",
    weight: 3,
    when: (w) => !w.redisUp,
    plan: (w) => ({
      detail: "",
      run: async () => {
        await control("redis/start");
        // Up means answering: wait (with a deadline) until the gateway has reconnected, as the next step assumes.
        await waitFor(
          "redis to answer after a restart",
          async () => (await w.redis.run((client) => client.ping()).catch(() => "")) === "PONG",
          { timeoutMs: 20_000 },
        );
        w.redisUp = true;
        return "started";
      },
    }),
    racy: false,
  },
  {
    name: "redisFlush",
    weight: 2,
    when: (w) => w.redisUp,
    plan: (w) => ({ detail: "", run: () => outcomeOf(async () => w.redis.run((client) => client.flushall())) }),
    racy: false,
  },
  {
    name: "providerFlip",
    // Rarer than checks, so a provider stays down across checks, acknowledgements and days (as real outages do).
    weight: 1,
    when: (w) => w.providers.length > 0,
    plan: (w) => {
      const provider = w.rng.pick(w.providers);
      return {
        detail: `${provider.name} → ${provider.ok ? "failing" : "ok"}`,
        run: async () => {
          provider.ok = !provider.ok;
          return "flipped";
        },
      };
    },
    racy: false,
  },
  {
    name: "healthCheck",
    weight: 4,
    when: (w) => w.providers.length > 0,
    plan: (w) => ({
      detail: w.providers.map((provider) => `${provider.name}:${provider.ok ? "ok" : "failing"}`).join(" "),
      run: () => outcomeOf(() => checkHealth(w)),
    }),
  },
  {
    // An outage: a healthy provider starts failing and stays down across the checks that notice it (each
    // transition raises an alert), so acknowledgements, days and retention meet an open alert.
    name: "outage",
    weight: 1,
    when: (w) => w.providers.some((provider) => provider.ok),
    plan: (w) => {
      const provider = w.rng.pick(w.providers.filter((candidate) => candidate.ok));
      return {
        detail: provider.name,
        run: () =>
          outcomeOf(async () => {
            provider.ok = false;
            const checks: string[] = [];
            // The schedule runs every minute.
            for (let check = 0; check < 3 && !checks.at(-1)?.includes(`${provider.name}:down`); check += 1) {
              if (check > 0) w.clock.advance(60_000);
              checks.push(await checkHealth(w));
            }
            return checks.join(" → ");
          }),
      };
    },
    racy: false,
  },
  {
    name: "ackAlert",
    weight: 2,
    when: (w) => w.alerts.length > 0,
    plan: (w) => {
      // Most often the newest, the one an administrator sees open (older ones are mostly resolved).
      const alertId = w.rng.chance(0.7) ? w.alerts.at(-1)! : w.rng.pick(w.alerts);
      return {
        detail: alertId,
        run: () =>
          outcomeOf(async () =>
            String((await acknowledgeAlert({ db: w.db, clock: w.clock }, { alert_id: alertId }, ADMIN)).changed),
          ),
      };
    },
  },
  {
    name: "ingest",
    weight: 4,
    when: (w) => w.sources.length > 0,
    plan: (w) => {
      const source = w.rng.pick(w.sources);
      const text = `${source.id} ${w.rng.pick(PHRASES)}`;
      // Each request is a clock tick later, so requests for a source are ordered.
      w.clock.advance(1);
      return {
        detail: `${source.id} "${text}"`,
        run: () => outcomeOf(async () => `message ${(await ingest(w, source, text)).id}`),
      };
    },
  },
  {
    // Pub/Sub's delivery of an embedding request: a pending one, or a duplicate of one already handled.
    name: "deliverEmbedding",
    weight: 6,
    when: (w) => w.messages.length > 0,
    plan: (w) => {
      const pending = pendingMessages(w);
      const message = pending.length > 0 && w.rng.chance(0.8) ? w.rng.pick(pending) : w.rng.pick(w.messages);
      return { detail: `${message.id} (${message.sourceId})`, run: () => deliverMessage(w, message) };
    },
  },
  {
    // Pub/Sub redelivering every unacknowledged message once, in a seeded order (what it does after its backoff).
    name: "redeliverPending",
    weight: 3,
    when: (w) => pendingMessages(w).length > 0,
    plan: (w) => {
      const order = [...pendingMessages(w)];
      for (let index = order.length - 1; index > 0; index -= 1) {
        const other = w.rng.int(0, index);
        [order[index], order[other]] = [order[other], order[index]];
      }
      return {
        detail: order.map((message) => message.id).join(" "),
        run: async () => {
          const outcomes: string[] = [];
          for (const message of order) outcomes.push(await deliverMessage(w, message));
          return outcomes.join("; ");
        },
      };
    },
  },
  {
    // Two requests for one source delivered together, the older one finishing last.
    name: "embedRace",
    weight: 2,
    when: (w) => racePairs(w).length > 0,
    plan: (w) => {
      const [older, newer] = w.rng.pick(racePairs(w));
      return {
        detail: `older ${older.id} finishes after newer ${newer.id} (${older.sourceId})`,
        run: async () => {
          const { held, meanwhile } = await whileEmbedding(w, older, () => deliverMessage(w, newer));
          return `newer: ${meanwhile}, older: ${held}`;
        },
      };
    },
    racy: false,
  },
  {
    // A request in flight (embedding) while a newer one for its source is ingested and applied.
    name: "supersedeDuringEmbed",
    weight: 1,
    when: (w) => w.messages.some((message) => !message.text.includes(POISON)),
    plan: (w) => {
      const message = w.rng.pick(w.messages.filter((candidate) => !candidate.text.includes(POISON)));
      const source = w.sources.find((candidate) => candidate.id === message.sourceId)!;
      const text = `${source.id} ${w.rng.pick(PHRASES.filter((phrase) => !phrase.includes(POISON) && !message.text.endsWith(phrase)))}`;
      w.clock.advance(1);
      return {
        detail: `${message.id} (${message.sourceId}) while "${text}" is ingested`,
        run: async () => {
          const { held, meanwhile } = await whileEmbedding(w, message, () =>
            outcomeOf(async () => {
              const newer = await ingest(w, source, text);
              return `${newer.id}: ${await deliverMessage(w, newer)}`;
            }),
          );
          return `newer ${meanwhile}, held: ${held}`;
        },
      };
    },
    racy: false,
  },
  {
    // A request in flight (embedding) while its source is deleted.
    name: "deleteDuringEmbed",
    weight: 1,
    when: (w) => w.messages.some((message) => !message.text.includes(POISON)),
    plan: (w) => {
      const message = w.rng.pick(w.messages.filter((candidate) => !candidate.text.includes(POISON)));
      w.clock.advance(1);
      return {
        detail: `${message.id} (${message.sourceId})`,
        run: async () => {
          const { held, meanwhile } = await whileEmbedding(w, message, () => deleteSource(w, message.sourceId));
          return `delete: ${meanwhile}, message: ${held}`;
        },
      };
    },
    racy: false,
  },
  {
    name: "deleteKnowledge",
    weight: 2,
    when: (w) => w.sources.length > 0,
    plan: (w) => {
      const source = w.rng.pick(w.sources);
      w.clock.advance(1);
      return { detail: source.id, run: () => deleteSource(w, source.id) };
    },
  },
];

/** Publishes an ingest request for `source` (the message waits in the world's pool for its delivery). */
async function ingest(w: World, source: SimSource, text: string): Promise<EmbeddingMessage> {
  let published: EmbeddingRequest | undefined;
  const result = await ingestKnowledge(
    {
      db: w.db,
      publish: async (_topic, request) => {
        published = request;
        return w.id("msg");
      },
      owners: [ADMIN],
      clock: w.clock,
    },
    { source_id: source.id, text },
    { uid: ADMIN, admin: true },
  );
  const message: EmbeddingMessage = {
    id: result.message_id,
    sourceId: source.id,
    text,
    request: published!,
    failures: 0,
  };
  w.messages.push(message);
  source.lastText = text;
  return message;
}

/**
 * Delivers `message`, holds it at the provider (after it has read its source's record), runs `meanwhile` to the
 * end, then lets the message finish. A delivery that never reaches the provider (a duplicate, a stale request) just
 * finishes first.
 */
async function whileEmbedding(
  w: World,
  message: EmbeddingMessage,
  meanwhile: () => Promise<string>,
): Promise<{ held: string; meanwhile: string }> {
  const hook = { reached: gate(), release: gate() };
  w.embedder.hooks.set(message.text, hook);
  try {
    const delivery = deliverMessage(w, message).finally(() => hook.reached.open());
    await hook.reached.promise;
    const other = await meanwhile();
    hook.release.open();
    return { held: await delivery, meanwhile: other };
  } finally {
    hook.release.open();
    w.embedder.hooks.delete(message.text);
  }
}

async function deleteSource(w: World, sourceId: string): Promise<string> {
  return outcomeOf(async () => {
    const at = w.clock.now().getTime();
    const result = await deleteKnowledge(
      { db: w.db, lance: w.lance, owners: [ADMIN], clock: w.clock },
      { source_id: sourceId },
      { uid: ADMIN, admin: true },
    );
    const source = w.sources.find((candidate) => candidate.id === sourceId)!;
    source.deletedAt = Math.max(source.deletedAt, at);
    // The delete's place in the source's order is its generation (a racing ingest may take the next one).
    const deleted: unknown = (await w.db.collection("knowledge_sources").doc(sourceId).get()).get("deleted_generation");
    if (typeof deleted === "number") source.deletedGeneration = Math.max(source.deletedGeneration, deleted);
    return `deleted ${result.deleted_chunks} chunks`;
  });
}
