export async function seedDemo(_env: Record<string,string>, step: (t: string) => void): Promise<void> { step("demo: nothing yet"); }
