// Runs doiuse-email (caniemail.com's support data, bundled in the package, so
// nothing is fetched) on herald's email.html for each post and compares the
// errors with a recorded baseline. Called by scripts/doiuse-email.sh, which
// makes the HTML; run that rather than this.
//
//     node doiuse-email-check.mjs BASELINE.json LABEL=FILE.html [LABEL=FILE.html ...]
//
// An error is one element, CSS rule or declaration using a feature that one
// of the checked clients does not support at all (doiuse-email's "errors";
// partial support is a warning and is not counted). The same element counts
// once for each client lacking the feature.
//
// Compared per post and per feature name, so a drop in one feature cannot
// hide a rise in another:
//   - a post in the baseline fails when any feature's count is above the
//     baseline's count for that post (a feature the baseline does not list
//     for it counts from 0);
//   - a post not in the baseline (a new corpus file) fails only when it uses
//     a feature that no post in the baseline uses; its counts are not
//     limited, since they grow with the length of the post;
//   - a baseline recorded with other clients or another doiuse-email or
//     caniemail data version fails everything: re-record it.
// Fewer errors than the baseline pass, with a reminder to re-record.
//
// UPDATE_BASELINE=1 writes BASELINE.json from this run instead of comparing.
// Exit status: 0 when every post passed (or the baseline was written), 1
// otherwise, 2 on a usage or input error.
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import process from "node:process";

import { doIUseEmail } from "doiuse-email";

// Gmail (web, apps, mobile web), Outlook (Windows, Windows Mail, Mac, apps)
// and Apple Mail (macOS, iOS): the clients most of the list reads mail in.
const CLIENTS = ["gmail.*", "outlook.*", "apple-mail.*"];

// The package exports neither file, so read them beside its entry point.
const doiuseDir = path.dirname(createRequire(import.meta.url).resolve("doiuse-email"));
const readJson = (f) => JSON.parse(fs.readFileSync(path.join(doiuseDir, f), "utf8"));
const doiuseVersion = readJson("package.json").version;
const caniemailDate = readJson("data/can-i-email.json").last_update_date;

function fatal(message) {
    console.error(`doiuse-email-check: ${message}`);
    process.exit(2);
}

function usage(message) {
    console.error("usage: node doiuse-email-check.mjs BASELINE.json LABEL=FILE.html [LABEL=FILE.html ...]");
    fatal(message);
}

const [baselinePath, ...pairs] = process.argv.slice(2);
if (!baselinePath || pairs.length === 0) usage("nothing to check");
const update = process.env.UPDATE_BASELINE === "1";

// --- measure ---------------------------------------------------------------

const ERROR = /^`(.+)` is not supported by `(.+)`$/;
const featureClients = {}; // feature -> Set of clients lacking it
const measured = {}; // label -> { total, features: { feature: count } }
for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) usage(`expected LABEL=FILE, got ${pair}`);
    const label = pair.slice(0, eq);
    const file = pair.slice(eq + 1);
    let html;
    try {
        html = fs.readFileSync(file, "utf8");
    } catch (e) {
        fatal(`cannot read ${file}: ${e.message}`);
    }
    const result = doIUseEmail(html, { emailClients: CLIENTS });
    const features = {};
    for (const message of result.errors ?? []) {
        const m = ERROR.exec(message);
        const feature = m ? m[1] : message;
        features[feature] = (features[feature] ?? 0) + 1;
        (featureClients[feature] ??= new Set()).add(m ? m[2] : "?");
    }
    measured[label] = { total: (result.errors ?? []).length, features: sortKeys(features) };
}

function sortKeys(obj) {
    return Object.fromEntries(Object.entries(obj).sort(([a], [b]) => a.localeCompare(b)));
}

// --- record ----------------------------------------------------------------

if (update) {
    const baseline = {
        comment:
            "doiuse-email errors per post and feature, written by UPDATE_BASELINE=1 scripts/doiuse-email.sh; see README (For developers)",
        "doiuse-email": doiuseVersion,
        caniemail: caniemailDate,
        clients: CLIENTS,
        features: sortKeys(
            Object.fromEntries(
                Object.entries(featureClients).map(([f, clients]) => [f, { unsupported_by: [...clients].sort() }]),
            ),
        ),
        posts: sortKeys(measured),
    };
    fs.writeFileSync(baselinePath, JSON.stringify(baseline, null, 2) + "\n");
}

// --- compare ---------------------------------------------------------------

let baseline = null;
if (!update) {
    try {
        baseline = JSON.parse(fs.readFileSync(baselinePath, "utf8"));
    } catch (e) {
        fatal(`cannot read the baseline ${baselinePath}: ${e.message} (record one with UPDATE_BASELINE=1)`);
    }
    const stale = [];
    if (baseline["doiuse-email"] !== doiuseVersion) stale.push(`doiuse-email ${baseline["doiuse-email"]}, now ${doiuseVersion}`);
    if (baseline.caniemail !== caniemailDate) stale.push(`caniemail data of ${baseline.caniemail}, now ${caniemailDate}`);
    if (JSON.stringify(baseline.clients) !== JSON.stringify(CLIENTS)) stale.push(`clients ${baseline.clients}, now ${CLIENTS}`);
    if (stale.length > 0) {
        console.log(`FAIL the baseline was recorded with ${stale.join("; ")}.`);
        console.log("     Re-record it: UPDATE_BASELINE=1 scripts/doiuse-email.sh");
        console.log(`\n0 passed, ${pairs.length} failed`);
        process.exit(1);
    }
}
const basePosts = baseline?.posts ?? {};
const knownFeatures = new Set(Object.keys(baseline?.features ?? {}));

const labels = Object.keys(measured);
const num = (n) => String(n).padStart(8);
console.log(`${"result".padEnd(15)}  ${"errors".padStart(8)}  ${"baseline".padStart(8)}  post`);
let passed = 0;
let failed = 0;
let improved = 0;
let unrecorded = 0;
for (const label of labels) {
    const now = measured[label];
    const was = basePosts[label];
    const problems = [];
    const notes = [];
    let result;
    if (update) {
        result = "recorded";
    } else if (was) {
        for (const [feature, count] of Object.entries(now.features)) {
            const before = was.features?.[feature] ?? 0;
            if (count > before) {
                problems.push(`\`${feature}\` ${before} -> ${count} (${[...featureClients[feature]].sort().join(", ")})`);
            } else if (count < before) {
                notes.push(`\`${feature}\` ${before} -> ${count}`);
            }
        }
        for (const [feature, before] of Object.entries(was.features ?? {})) {
            if (!(feature in now.features)) notes.push(`\`${feature}\` ${before} -> 0`);
        }
        result = problems.length > 0 ? "FAIL" : notes.length > 0 ? "ok (fewer)" : "ok";
    } else {
        for (const [feature, count] of Object.entries(now.features)) {
            if (!knownFeatures.has(feature)) {
                problems.push(`\`${feature}\` ${count}, a feature no recorded post uses (${[...featureClients[feature]].sort().join(", ")})`);
            }
        }
        result = problems.length > 0 ? "FAIL (new post)" : "ok (new post)";
        unrecorded += 1;
    }
    console.log(`${result.padEnd(15)}  ${num(now.total)}  ${num(was ? was.total : "-")}  ${label}`);
    for (const p of problems) console.log(`    | more errors: ${p}`);
    for (const n of notes) console.log(`    | fewer: ${n}`);
    if (problems.length > 0) failed += 1;
    else passed += 1;
    if (notes.length > 0) improved += 1;
}

// Per feature, over all posts checked.
console.log();
const totals = {};
for (const { features } of Object.values(measured)) {
    for (const [f, n] of Object.entries(features)) totals[f] = (totals[f] ?? 0) + n;
}
const baseTotals = {};
for (const [label, { features }] of Object.entries(basePosts)) {
    if (!(label in measured)) continue;
    for (const [f, n] of Object.entries(features ?? {})) baseTotals[f] = (baseTotals[f] ?? 0) + n;
}
const allFeatures = [...new Set([...Object.keys(totals), ...Object.keys(baseTotals)])].sort(
    (a, b) => (totals[b] ?? 0) - (totals[a] ?? 0) || a.localeCompare(b),
);
const fwidth = Math.max(7, ...allFeatures.map((f) => f.length));
console.log(`${"feature".padEnd(fwidth)}  ${"errors".padStart(8)}  ${"baseline".padStart(8)}  ${"posts".padStart(5)}  not supported by`);
for (const f of allFeatures) {
    const posts = Object.values(measured).filter((m) => f in m.features).length;
    const clients = featureClients[f] ? [...featureClients[f]].sort().join(", ") : "";
    const base = update ? "-" : (baseTotals[f] ?? 0);
    console.log(`${f.padEnd(fwidth)}  ${num(totals[f] ?? 0)}  ${num(base)}  ${String(posts).padStart(5)}  ${clients}`);
}
console.log();

const missing = Object.keys(basePosts).filter((l) => !(l in measured));
if (missing.length > 0 && !update) {
    const which = missing.length <= 5 ? `: ${missing.join(", ")}` : " (the corpus was not there?)";
    console.log(`note: ${missing.length} post(s) in the baseline were not checked${which}`);
}
if (update) {
    console.log(`baseline written: ${baselinePath} (${labels.length} posts, doiuse-email ${doiuseVersion}, caniemail ${caniemailDate})`);
} else if (improved > 0 || unrecorded > 0) {
    console.log(
        `note: ${improved} post(s) with fewer errors, ${unrecorded} not in the baseline; ` +
            "record the new numbers with UPDATE_BASELINE=1 scripts/doiuse-email.sh",
    );
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
