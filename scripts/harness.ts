/**
 * The local harness: one program behind `npm start`, `npm test` and `npm run bench`.
 *
 * It brings up, on free loopback ports, the Firebase emulators (functions,
 * auth, hosting, the official Firestore and Pub/Sub emulators), a Realtime
 * Database, redis-server, a MongoDB wire server and a LanceDB folder; waits
 * for them with deadlines; delivers the events no emulator fires here; and
 * tears everything down on exit, failure or Ctrl-C.
 *
 *   tsx scripts/harness.ts start            the suite with demo data, until Ctrl-C
 *   tsx scripts/harness.ts test [tier…]     mocha over test/<tier> (unit, integration, e2e; all by default) or named test files
 *   tsx scripts/harness.ts bench            the benchmark
 *   tsx scripts/harness.ts sim [--seeds N]  the seeded simulation (test/sim; SIM_SEED, SIM_BUDGET_MS, SIM_STEPS)
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startControlServer } from "./harness/control";
import { startEmbeddingsApi } from "./harness/embeddings-api";
import { LOCAL_MODEL_PROVIDERS } from "./harness/local-params";
import { startStripeStandin } from "./harness/stripe-standin";
import {
  installExitHandlers,
  isTearingDown,
  onTeardown,
  reapPath,
  startProcess,
  startReaper,
  teardown,
} from "./harness/processes";
import {
  PROJECT_ID,
  REGION,
  ROOT,
  STATE_DIR,
  officialRtdbAvailable,
  startEmulators,
  startMongo,
  startRedis,
  startRtdbSubstitute,
} from "./harness/services";
import { startRtdbWatcher, startScheduleTicker } from "./harness/triggers";

type Mode = "start" | "test" | "bench" | "sim";

async function main(): Promise<number> {
  const [modeArg, ...rest] = process.argv.slice(2);
  if (modeArg !== "start" && modeArg !== "test" && modeArg !== "bench" && modeArg !== "sim") {
    process.stderr.write("usage: harness.ts start | test [unit|integration|e2e|sim …] | bench | sim [--seeds N]\n");
    return 2;
  }
  const mode: Mode = modeArg;
  installExitHandlers();
  const started = Date.now();
  const step = (text: string) =>
    process.stdout.write(`[harness +${((Date.now() - started) / 1000).toFixed(1)}s] ${text}\n`);

  const runDir = path.join(STATE_DIR, `run-${process.pid}`);
  mkdirSync(runDir, { recursive: true });
  // Before any child: they all inherit the run's mark, which is how the reaper finds them if we die.
  startReaper(runDir);
  const lanceDir = mkdtempSync(path.join(os.tmpdir(), "metered-ai-lancedb-"));
  onTeardown(() => rmSync(lanceDir, { recursive: true, force: true }));
  reapPath({ remove: lanceDir });

  if (mode === "test" && rest.length > 0 && rest.every((tier) => tier === "unit" || tier.startsWith("test/unit/"))) {
    // Pure unit tests need no services.
    return runChild("mocha", mochaArgs(rest), {}, runDir);
  }

  step("starting redis-server, MongoDB wire server and Realtime Database");
  const [redis, mongo] = await Promise.all([startRedis(runDir), startMongo()]);
  const useOfficialRtdb = officialRtdbAvailable();
  const rtdb = useOfficialRtdb ? undefined : await startRtdbSubstitute();

  // Stripe is a remote paid API: a local server speaking its REST subset stands in (scripts/harness/stripe-standin.ts).
  const stripe = await startStripeStandin({
    secretKey: DEV_SECRETS.STRIPE_SECRET_KEY,
    webhookSecret: DEV_SECRETS.STRIPE_WEBHOOK_SECRET,
  });
  onTeardown(() => stripe.close());

  // Every param whose deployed default is empty (the component off) gets its local value here.
  const functionEnv: Record<string, string> = {
    STRIPE_API_BASE: stripe.url,
    ENVIRONMENT: mode === "start" ? "local" : mode === "sim" ? "test" : mode,
    REDIS_URL: redis.url,
    MONGODB_URI: mongo.uri,
    MODEL_PROVIDERS: LOCAL_MODEL_PROVIDERS,
    LANCEDB_URI: lanceDir,
  };
  if (mode === "test") {
    // Tests embed through the OpenAI-compatible client against a local server speaking that API, which can
    // be told to fail; `start` and `bench` use the offline local embedder (the default).
    const embeddingsApi = await startEmbeddingsApi({ dimension: 384, apiKey: DEV_SECRETS.EMBEDDING_API_KEY });
    onTeardown(() => embeddingsApi.close());
    Object.assign(functionEnv, {
      EMBEDDING_PROVIDER: "openai",
      EMBEDDING_BASE_URL: embeddingsApi.url,
      EMBEDDING_MODEL: "fake-openai-hash",
      EMBEDDING_DIMS: "384",
    });
    // Jobs: re-claim idle stream entries after 1 s and dead-letter on the 3rd delivery, so the poison test runs in seconds.
    Object.assign(functionEnv, { JOBS_VISIBILITY_TIMEOUT_MS: "1000", JOBS_MAX_DELIVERIES: "3" });
  }
  // The same values for the functions and for this run's own processes (tests, sim, bench), which import the
  // functions' code: outside the functions runtime a param reads only the environment (an int without one is 0).
  const paramEnv = writeFunctionsEnvLocal(functionEnv);

  step(
    "starting the Firebase emulators (functions, auth, hosting, firestore, pubsub" +
      (useOfficialRtdb ? ", database)" : ")"),
  );
  const emulators = await startEmulators({
    env: rtdb ? { FIREBASE_DATABASE_EMULATOR_HOST: rtdb.host } : {},
    logDir: runDir,
    withDatabase: useOfficialRtdb,
    echo: process.env.HARNESS_ECHO === "1",
    parallel: emulatorParallelism(mode),
  });
  const { ports } = emulators;
  const rtdbHost = rtdb?.host ?? `127.0.0.1:${ports.database}`;

  const suiteEnv: Record<string, string> = {
    GCLOUD_PROJECT: PROJECT_ID,
    GOOGLE_CLOUD_PROJECT: PROJECT_ID,
    FIREBASE_CONFIG: JSON.stringify({
      projectId: PROJECT_ID,
      databaseURL: `http://${rtdbHost}?ns=${PROJECT_ID}-default-rtdb`,
    }),
    FIRESTORE_EMULATOR_HOST: `127.0.0.1:${ports.firestore}`,
    PUBSUB_EMULATOR_HOST: `127.0.0.1:${ports.pubsub}`,
    FIREBASE_AUTH_EMULATOR_HOST: `127.0.0.1:${ports.auth}`,
    FIREBASE_DATABASE_EMULATOR_HOST: rtdbHost,
    METADATA_SERVER_DETECTION: "none",
    FUNCTIONS_ORIGIN: emulators.functionsOrigin,
    FUNCTIONS_BASE_URL: `${emulators.functionsOrigin}/${PROJECT_ID}/${REGION}`,
    HOSTING_ORIGIN: `http://127.0.0.1:${ports.hosting}`,
    FUNCTIONS_REGION: REGION,
    RTDB_SUBSTITUTE: rtdb ? "1" : "0",
    // Tests call the metering endpoint with the same key the functions emulator was given.
    METERING_API_KEY: DEV_SECRETS.METERING_API_KEY,
    WORKER_API_KEY: DEV_SECRETS.WORKER_API_KEY,
    STRIPE_SECRET_KEY: DEV_SECRETS.STRIPE_SECRET_KEY,
    STRIPE_WEBHOOK_SECRET: DEV_SECRETS.STRIPE_WEBHOOK_SECRET,
    ...paramEnv,
  };
  // What the stand-in's hosted checkout page completes is delivered, signed, to the functions' webhook.
  stripe.webhookUrl = `${suiteEnv.FUNCTIONS_BASE_URL}/stripeWebhook`;

  // The simulation delivers queue events itself (duplicated, late); a second deliverer would make its runs unrepeatable.
  const simOnly =
    mode === "sim" || (rest.length > 0 && rest.every((tier) => tier === "sim" || tier.startsWith("test/sim/")));
  if (rtdb && !simOnly)
    await startRtdbWatcher({ functionsOrigin: emulators.functionsOrigin, env: suiteEnv, log: step });
  const control = await startControlServer({ redis });
  suiteEnv.HARNESS_CONTROL_URL = control.url;

  printTable(step, [
    ["functions emulator", emulators.functionsOrigin],
    ["hosting (/api/health)", suiteEnv.HOSTING_ORIGIN],
    ["firestore emulator", suiteEnv.FIRESTORE_EMULATOR_HOST],
    ["pubsub emulator", suiteEnv.PUBSUB_EMULATOR_HOST],
    ["auth emulator", suiteEnv.FIREBASE_AUTH_EMULATOR_HOST],
    [rtdb ? "realtime db (substitute)" : "realtime db emulator", rtdbHost],
    ["redis", redis.url],
    [mongo.external ? "mongodb (MONGODB_URI)" : "mongodb (wire server)", mongo.uri],
    ["lancedb", lanceDir],
    ["stripe (stand-in)", stripe.url],
    ["logs", runDir],
  ]);

  if (mode === "test") {
    const tiers = rest.length > 0 ? rest : ["unit", "integration", "e2e"];
    return runChild("mocha", mochaArgs(tiers), suiteEnv, runDir);
  }
  if (mode === "sim") {
    const seeds = rest.indexOf("--seeds");
    const simEnv: Record<string, string> = seeds >= 0 && rest[seeds + 1] ? { SIM_SEEDS: rest[seeds + 1] } : {};
    return runChild("mocha", ["test/sim/**/*.test.ts"], { ...suiteEnv, ...simEnv }, runDir);
  }
  if (mode === "bench") {
    return runChild("tsx", [path.join(ROOT, "bench", "run.ts"), ...rest], suiteEnv, runDir);
  }

  // Scripts run beside the suite (backfill, worker) can `source .harness/env` (removed at teardown).
  const envFile = path.join(STATE_DIR, "env");
  writeFileSync(
    envFile,
    Object.entries(suiteEnv)
      .map(([key, value]) => `export ${key}='${value.replace(/'/g, "'\\''")}'`)
      .join("\n") + "\n",
  );
  onTeardown(() => rmSync(envFile, { force: true }));
  reapPath({ remove: envFile });
  const { seedDemo } = await import("./harness/demo");
  await seedDemo(suiteEnv, step);
  startScheduleTicker({ functionsOrigin: emulators.functionsOrigin, log: step });
  // The reference workers, so jobs created in the demo run to completion (logs in the run folder).
  for (const type of ["podcast", "report"]) {
    startProcess(
      `worker-${type}`,
      path.join(ROOT, "node_modules", ".bin", "tsx"),
      [path.join(ROOT, "scripts", "worker.ts"), "--type", type],
      {
        cwd: ROOT,
        env: { ...process.env, ...suiteEnv },
        logFile: path.join(runDir, `worker-${type}.log`),
      },
    );
  }
  const { warmWorkers } = await import("./harness/warm");
  const warm = (process.env.LOCAL_WARM_FUNCTIONS ?? "getBalance,spendCredits")
    .split(",")
    .map((name) => name.trim())
    .filter(Boolean);
  if (warm.length > 0) {
    step(`warming ${emulatorParallelism(mode)} workers each for ${warm.join(", ")} (LOCAL_WARM_FUNCTIONS)`);
    await warmWorkers({
      functionsBaseUrl: suiteEnv.FUNCTIONS_BASE_URL,
      names: warm,
      workers: emulatorParallelism(mode) ?? 1,
      log: step,
    });
  }
  process.stdout.write(
    [
      "",
      "The suite is running. Try:",
      `  curl -s ${suiteEnv.HOSTING_ORIGIN}/api/health`,
      `  curl -s ${suiteEnv.FUNCTIONS_BASE_URL}/health`,
      "Press Ctrl-C to stop everything.",
      "",
    ].join("\n"),
  );
  const code = await emulators.process.exited;
  if (isTearingDown()) return 130; // Ctrl-C: the emulators stopped because we asked them to
  step(`the emulators exited unexpectedly (code ${code}); see ${emulators.process.log}`);
  return 1;
}

/**
 * Invocations the functions emulator runs at once: FUNCTIONS_EMULATOR_PARALLEL when set, else a small
 * bound for `npm start` so a client's burst queues on warm workers instead of spawning a process per
 * call (see docs on local bursts in the README).
 */
function emulatorParallelism(mode: Mode): number | undefined {
  const given = Number(process.env.FUNCTIONS_EMULATOR_PARALLEL);
  if (Number.isInteger(given) && given > 0) return given;
  return mode === "start" ? 4 : undefined;
}

/** Tiers become globs; arguments that name test files are passed as they are (to run one file while working on it). */
function mochaArgs(tiers: string[]): string[] {
  const known = ["unit", "integration", "e2e", "sim"];
  const unknown = tiers.filter((tier) => !known.includes(tier) && !tier.endsWith(".ts"));
  if (unknown.length > 0) throw new Error(`unknown test tier(s): ${unknown.join(", ")}; use ${known.join(", ")}`);
  return tiers.map((tier) => (tier.endsWith(".ts") ? tier : `test/${tier}/**/*.test.ts`));
}

/** Runs a tool from node_modules/.bin with the suite's environment, inheriting the terminal. */
async function runChild(tool: string, args: string[], env: Record<string, string>, runDir: string): Promise<number> {
  const child = startProcess(tool, path.join(ROOT, "node_modules", ".bin", tool), args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    logFile: path.join(runDir, `${tool}.log`),
    echoRaw: true,
  });
  const code = await child.exited;
  return code ?? 1;
}

/**
 * The functions emulator prompts for every param without a value in a dotenv
 * file, so all declared params are written to functions/.env.local (defaults,
 * then this run's values) and secrets to functions/.secret.local. Files that
 * were there before are restored at teardown. Returns the plain values.
 */
function writeFunctionsEnvLocal(values: Record<string, string>): Record<string, string> {
  const declared = declaredParams();
  const plain: Record<string, string> = {};
  const secrets: Record<string, string> = {};
  for (const param of declared) {
    if (param.secret) secrets[param.name] = DEV_SECRETS[param.name] ?? `dev-${param.name.toLowerCase()}`;
    else plain[param.name] = param.default === undefined ? "" : String(param.default);
  }
  Object.assign(plain, values);
  writeRestoredOnTeardown(path.join(ROOT, "functions", ".env.local"), plain);
  writeRestoredOnTeardown(path.join(ROOT, "functions", ".secret.local"), secrets);
  return plain;
}

/** Secrets' values for local runs; tests read the same table through HARNESS_SECRETS. */
export const DEV_SECRETS: Record<string, string> = {
  METERING_API_KEY: "dev-metering-key",
  EMBEDDING_API_KEY: "dev-embedding-key",
  WORKER_API_KEY: "dev-worker-key",
  STRIPE_SECRET_KEY: "sk_test_local_standin",
  STRIPE_WEBHOOK_SECRET: "whsec_local_standin",
};

/** A param default as firebase-functions accepts it (config.ts uses no CEL expressions). */
type ParamDefault = string | number | boolean | string[];

function declaredParams(): Array<{ name: string; default?: ParamDefault; secret: boolean }> {
  const functionsDir = path.join(ROOT, "functions");
  const params = require(require.resolve("firebase-functions/params", { paths: [functionsDir] })) as {
    declaredParams: Array<{ name: string; constructor: { name: string }; options?: { default?: ParamDefault } }>;
  };
  // The bundle evaluates config.ts (every param is declared there) on load; the functions stay unloaded.
  require(path.join(functionsDir, "lib", "index.js"));
  return params.declaredParams.map((param) => ({
    name: param.name,
    default: param.options?.default,
    secret: param.constructor.name === "SecretParam",
  }));
}

function writeRestoredOnTeardown(file: string, values: Record<string, string>): void {
  const previous = existsSync(file) ? readFileSync(file, "utf8") : undefined;
  const body = Object.entries(values)
    .map(([key, value]) => `${key}=${value}`)
    .join("\n");
  writeFileSync(file, `# written by scripts/harness.ts for this run\n${body}\n`);
  onTeardown(() => (previous === undefined ? rmSync(file, { force: true }) : writeFileSync(file, previous)));
  reapPath(previous === undefined ? { remove: file } : { restore: file, content: previous });
}

function printTable(step: (text: string) => void, rows: Array<[string, string]>): void {
  const width = Math.max(...rows.map(([name]) => name.length));
  step("ready:\n" + rows.map(([name, where]) => `  ${name.padEnd(width)}  ${where}`).join("\n"));
}

main()
  .then(async (code) => {
    await teardown();
    process.exit(code);
  })
  .catch(async (error: unknown) => {
    process.stderr.write(`harness failed: ${error instanceof Error ? error.message : String(error)}\n`);
    await teardown();
    process.exit(1);
  });
