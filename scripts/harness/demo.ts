import { seedScheduledDemo } from "./demo-scheduled";

export async function seedDemo(env: Record<string, string>, step: (t: string) => void): Promise<void> {
  await seedScheduledDemo(env, step);
}
