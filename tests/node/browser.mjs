// Debian's Chromium, headless, driven by playwright-core for tests/browser.py: one JSON
// command per stdin line, one JSON answer per stdout line ({"ok": result} or {"error": text}).
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
// clipboard-read: tests read back what the page's copy buttons wrote
const profile = (width, height) => ({ viewport: { width, height }, permissions: ["clipboard-read", "clipboard-write"] });
let context = await browser.newContext(profile(1280, 800));
let page = await context.newPage();
const logs = [];
const watch = (p) => {
  p.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  p.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
};
watch(page);

const ops = {
  async fresh({ width = 1280, height = 800 }) { // a new profile: no cookies
    await context.close();
    context = await browser.newContext(profile(width, height));
    page = await context.newPage();
    watch(page);
    return null;
  },
  async goto({ url }) { const r = await page.goto(url); return r ? r.status() : null; },
  async wait({ selector, text, timeout = 30000 }) {
    const locator = text === undefined ? page.locator(selector).first()
      : page.locator(selector, { hasText: text }).first();
    await locator.waitFor({ timeout });
    return locator.textContent();
  },
  async click({ selector }) { await page.locator(selector).first().click(); return null; },
  async fill({ selector, value }) { await page.locator(selector).first().fill(value); return null; },
  async select({ selector, value }) { await page.locator(selector).first().selectOption(value); return null; },
  async text({ selector }) { return page.locator(selector).first().textContent(); },
  async evaluate({ expression }) { return page.evaluate(expression); },
  async screenshot({ path, fullPage = false }) { await page.screenshot({ path, fullPage }); return null; },
  async logs() { return logs.splice(0); },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const { op, ...args } = JSON.parse(line);
  let answer;
  try {
    answer = { ok: await ops[op](args) };
  } catch (error) {
    answer = { error: String(error.message || error).split("\n")[0] };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
await browser.close();
