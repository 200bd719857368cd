// Opens a page in the distribution's headless Chromium (playwright-core drives it; no browser is
// downloaded) and prints what the page wrote into #result once it says it is done.
// Usage: node browser/open.mjs URL [CHROMIUM]

import { chromium } from "playwright-core";

const [url, executablePath = "/usr/bin/chromium"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`page console: ${m.text()}`));
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(url);
  await page.waitForSelector("#result[data-done]", { timeout: 90_000 });
  console.log(await page.textContent("#result"));
} finally {
  await browser.close();
}
