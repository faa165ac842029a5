// The axe-core accessibility audit, run inside a page. axe is injected by evaluating its
// source through Playwright, which the page's Content-Security-Policy does not govern
// (a <script> tag added to the page would be refused, as it should be).
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');

const AXE_SOURCE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** Impacts that fail the audit. */
const FAILING = ['serious', 'critical'];

/** Runs axe on the whole page and returns its serious and critical violations, each as
 *  one line per element: `rule (impact): target — what is wrong`. */
async function seriousViolations(page) {
  // A message fading in is read at its passing colour: let such animations end first.
  await page.evaluate(() =>
    Promise.all(
      document
        .getAnimations()
        .filter((animation) => animation.effect.getTiming().iterations !== Infinity)
        .map((animation) => animation.finished.catch(() => {})),
    ),
  );
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ['violations'] })).violations);
  return violations
    .filter((v) => FAILING.includes(v.impact))
    .flatMap((v) =>
      v.nodes.map((node) => {
        const why = [...node.any, ...node.all, ...node.none].map((check) => check.message).join('; ');
        return `${v.id} (${v.impact}): ${node.target.join(' ')} — ${why}`;
      }),
    );
}

/** Asserts that axe finds no serious or critical violation on the page; `where` names
 *  the mode in the failure message. */
async function assertAccessible(page, where) {
  assert.deepEqual(await seriousViolations(page), [], `axe: serious or critical violations (${where})`);
}

module.exports = { assertAccessible, seriousViolations };
