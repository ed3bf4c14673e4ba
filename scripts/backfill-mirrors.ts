/**
 * `npm run backfill:mirrors`: rebuild every RTDB user_balances mirror from Firestore.
 *
 * Uses the standard Firebase environment: against the local suite, the
 * variables `npm start` prints (FIRESTORE_EMULATOR_HOST, FIREBASE_DATABASE_EMULATOR_HOST,
 * GCLOUD_PROJECT, FIREBASE_CONFIG); against a real project, Application Default
 * Credentials with GCLOUD_PROJECT and FIREBASE_CONFIG's databaseURL.
 * Idempotent and safe to run while triggers run.
 */
import { firestore, realtimeDb } from "../functions/src/adapters/firebase";
import { backfillMirrors } from "../functions/src/mirror/backfill";

async function main(): Promise<void> {
  const pageSize = Number(process.argv.find((arg) => arg.startsWith("--page-size="))?.split("=")[1] ?? 300);
  const started = Date.now();
  const result = await backfillMirrors(
    { db: firestore(), rtdb: realtimeDb() },
    {
      pageSize,
      onProgress: (progress) =>
        process.stdout.write(
          `[backfill] ${progress.scanned} users scanned, ${progress.written} mirrors written, ${progress.current} already current (last ${progress.lastUid})\n`,
        ),
    },
  );
  process.stdout.write(
    `[backfill] done in ${((Date.now() - started) / 1000).toFixed(1)} s: ${result.scanned} users, ${result.written} written, ${result.current} already current\n`,
  );
  await realtimeDb().app.delete();
}

main()
  .then(() => process.exit(0))
  .catch((error: unknown) => {
    process.stderr.write(`backfill failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
