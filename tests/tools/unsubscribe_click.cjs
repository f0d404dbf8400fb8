// A person on the unsubscribe page, in headless Chromium (Debian's, driven
// by puppeteer-core from tools/node; nothing is downloaded): open the link,
// press the button, see the confirmation, press Undo.
//
// Usage: node unsubscribe_click.cjs CHROMIUM URL SCREENSHOT_PREFIX
// Prints one JSON object: the headings seen, the button texts, and every
// console message (a Content-Security-Policy violation shows there).
const path = require("path");
const puppeteer = require(path.join(__dirname, "../../tools/node/node_modules/puppeteer-core"));

(async () => {
  const [chromium, url, prefix] = process.argv.slice(2);
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
  const out = { console: [], steps: [] };
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 420, height: 700 });
    page.on("console", (m) => out.console.push(m.text()));
    page.on("pageerror", (e) => out.console.push(String(e)));
    const step = async (name) => {
      const s = await page.evaluate(() => ({
        heading: document.querySelector("h1") && document.querySelector("h1").textContent,
        text: document.body.innerText,
        buttons: Array.from(document.querySelectorAll("button")).map((b) => b.textContent),
        buttonBackground: document.querySelector("button") ? getComputedStyle(document.querySelector("button")).backgroundColor : null,
      }));
      s.name = name;
      await page.screenshot({ path: `${prefix}-${name}.png`, fullPage: true });
      out.steps.push(s);
    };
    const first = await page.goto(url, { waitUntil: "load" });
    out.firstStatus = first.status();
    await step("page");
    await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("button")]);
    await step("unsubscribed");
    await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("button")]);
    await step("undone");
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
