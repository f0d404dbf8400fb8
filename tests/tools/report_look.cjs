// `herald report`'s page in headless Chromium (Debian's, driven by
// puppeteer-core from tools/node; nothing is downloaded), at each width
// asked for: does the page scroll sideways, does every chart have a title
// and labelled axes, does it run a script or ask for anything but itself.
// A full-page screenshot per width.
//
// Usage: node report_look.cjs CHROMIUM PAGE.html SCREENSHOT_PREFIX WIDTH...
// Prints one JSON object: {widths: [{width, scrollWidth, innerWidth,
// charts: [{id, title, axisLabels: [...]}], scripts, text}], requests: [...]}
const path = require("path");
const puppeteer = require(path.join(__dirname, "../../tools/node/node_modules/puppeteer-core"));

(async () => {
  const [chromium, file, prefix, ...widths] = process.argv.slice(2);
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
  const url = "file://" + file;
  const out = { widths: [], requests: [], console: [] };
  try {
    for (const w of widths.map(Number)) {
      const page = await browser.newPage();
      page.on("request", (r) => { if (r.url() !== url) out.requests.push(r.url()); });
      page.on("console", (m) => out.console.push(m.text()));
      await page.setViewport({ width: w, height: 900 });
      await page.goto(url, { waitUntil: "load" });
      const seen = await page.evaluate(() => ({
        innerWidth: window.innerWidth,
        scrollWidth: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
        scripts: document.querySelectorAll("script").length,
        text: document.body.innerText,
        charts: Array.from(document.querySelectorAll("svg")).map((s) => ({
          id: s.id,
          title: (s.querySelector(":scope > title") || { textContent: "" }).textContent,
          axisLabels: Array.from(s.querySelectorAll(".axis-label")).map((t) => {
            const b = t.getBoundingClientRect();
            return { text: t.textContent, shown: b.width > 0 && b.height > 0 };
          }),
          width: s.getBoundingClientRect().width,
        })),
      }));
      seen.width = w;
      await page.screenshot({ path: `${prefix}-${w}.png`, fullPage: true });
      out.widths.push(seen);
      await page.close();
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
