// A person writing a post with `herald preview POST --watch` open in
// headless Chromium (Debian's, driven by puppeteer-core from tools/node;
// nothing is downloaded). The script edits the post on disk itself and
// never reloads the page: the page must change by itself.
//
//   1. open the page; 2. change the title and add a paragraph, save, wait
//   for both on the page; 3. break the front matter, save, wait for the
//   error (with its file:line) on the page; 4. fix it, save, wait for the
//   page to recover with a new paragraph.
//
// Usage: node preview_watch.cjs CHROMIUM URL POST SCREENSHOT_PREFIX
// Prints one JSON object: per step what the page showed and how long it
// took, how often the page navigated, and every console message (a
// Content-Security-Policy violation shows there).
const fs = require("fs");
const path = require("path");
const puppeteer = require(path.join(__dirname, "../../tools/node/node_modules/puppeteer-core"));

const WAIT_MS = 10000;

const out = { console: [], steps: [], navigations: 0 };

// A step that hangs (an evaluate during a reload, a screenshot on a busy
// machine) must not hang the whole test: each call has its own limit, and
// the script as a whole gives up with what it saw so far.
const within = (ms, promise, fallback) =>
  Promise.race([promise, new Promise((r) => setTimeout(() => r(fallback), ms))]);
setTimeout(() => {
  out.timedOut = true;
  console.log(JSON.stringify(out));
  process.exit(2);
}, 170000).unref();

(async () => {
  const [chromium, url, post, prefix] = process.argv.slice(2);
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 900 });
    page.on("console", (m) => out.console.push(m.text()));
    page.on("pageerror", (e) => out.console.push(String(e)));
    page.on("framenavigated", (f) => {
      if (f === page.mainFrame()) out.navigations += 1;
    });
    // What the page shows now; null while it is between two loads.
    const look = async () => {
      try {
        return await within(3000, page.evaluate(() => {
          const err = document.getElementById("herald-error");
          const h1 = document.querySelector("header h1");
          const text = document.querySelector("pre.text");
          const findings = document.getElementById("herald-findings");
          return {
            version: document.body.getAttribute("data-version"),
            error: err ? err.innerText : null,
            // The error must be where the writer looks, not above the window.
            errorInView: err ? err.getBoundingClientRect().top >= 0 && err.getBoundingClientRect().top < window.innerHeight : null,
            subject: h1 ? h1.textContent : null,
            text: text ? text.textContent : null,
            findings: findings ? findings.innerText : null,
          };
        }), null);
      } catch (e) {
        return null;
      }
    };
    const waitFor = async (name, ok) => {
      const start = Date.now();
      let seen = null;
      while (Date.now() - start < WAIT_MS) {
        seen = await look();
        if (seen && ok(seen)) {
          seen.name = name;
          seen.ms = Date.now() - start;
          seen.ok = true;
          // Enough to recognise it in a failure message.
          seen.text = seen.text && seen.text.slice(0, 200);
          await within(10000, page.screenshot({ path: `${prefix}-${name}.png` }).catch(() => null), null);
          out.steps.push(seen);
          return true;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      if (seen && seen.text) seen.text = seen.text.slice(-400);
      out.steps.push({ name, ok: false, last: seen });
      return false;
    };
    const first = await page.goto(url, { waitUntil: "load" });
    out.firstStatus = first.status();
    await waitFor("opened", (s) => s.subject !== null);
    // Let the page's event stream connect before the first save.
    await new Promise((r) => setTimeout(r, 500));

    const original = fs.readFileSync(post, "utf8");
    const edited = original
      // Both titles: the subject is the public one (seo.title) when the post has it.
      .replace(/^(\s*)title: .*$/gm, '$1title: "Live Preview Title 4711"')
      .concat("\n\nA paragraph written while watching, marker 4711.\n");
    fs.writeFileSync(post, edited);
    if (!(await waitFor("edited", (s) => s.subject === "Live Preview Title 4711" && (s.text || "").includes("marker 4711")))) {
      return;
    }

    // Front matter YAML that does not parse: an unclosed list on line 3.
    const broken = edited.replace(/^title: .*$/m, 'title: "Live Preview Title 4711"\nauthor: [unclosed');
    fs.writeFileSync(post, broken);
    if (!(await waitFor("broken", (s) => s.error !== null))) {
      return;
    }

    const fixed = edited.concat("\nFixed again, marker 4712.\n");
    fs.writeFileSync(post, fixed);
    await waitFor("fixed", (s) => s.error === null && (s.text || "").includes("marker 4712"));
  } finally {
    console.log(JSON.stringify(out));
    await within(10000, browser.close(), null);
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
