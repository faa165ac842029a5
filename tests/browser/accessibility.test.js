// The page for everyone: axe-core finds no serious or critical violation (contrast
// included) in any mode — each transport, Auto, race mode after a burst, the guided
// scenario — at desktop and phone widths, in the light and the dark colour scheme; and
// every control the keyboard reaches shows a focus ring that stands out from what is
// around it and from the control's own fill (the selected pill's ring was once its own
// teal).
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');
const { assertAccessible } = require('./axe');

// A plain server: it offers WebTransport, which an emulated link does not carry.
const env = h.useServerAndBrowser();

const VIEWPORTS = { desktop: { width: 1280, height: 900 }, phone: { width: 390, height: 844 } };
const SCHEMES = ['light', 'dark'];

/** The page in `scheme` at `viewport`, on `transport`. */
function open(transport, viewport, scheme) {
  return h.openChat(env.browser, env.server.url, {
    transport,
    viewport: VIEWPORTS[viewport],
    context: { colorScheme: scheme },
  });
}

for (const scheme of SCHEMES) {
  for (const viewport of Object.keys(VIEWPORTS)) {
    test(`no serious violation on any transport or in Auto, after messages (${scheme}, ${viewport})`, { timeout: 120000 }, async () => {
      for (const transport of ['long-poll', 'websocket', 'sse', 'webtransport', 'auto']) {
        const page = await open(transport, viewport, scheme);
        const body = `audited on ${transport}`;
        await h.send(page, body);
        await h.waitForBodies(page, [body]);
        await assertAccessible(page, `${transport}, ${scheme}, ${viewport}`);
        await page.context().close();
      }
    });

    test(`no serious violation in race mode after a burst, glossary open (${scheme}, ${viewport})`, { timeout: 60000 }, async () => {
      const page = await open('websocket', viewport, scheme);
      await h.raceBurst(page, 8);
      await page.locator('details summary').first().click();
      await assertAccessible(page, `race mode, ${scheme}, ${viewport}`);
      await page.context().close();
    });
  }
}

test('no serious violation once the guided scenario has run (light and dark)', { timeout: 120000 }, async () => {
  for (const scheme of SCHEMES) {
    const page = await open('websocket', 'desktop', scheme);
    await page.click('#guide-start');
    await page.waitForSelector('body[data-guide="done"]', { timeout: 90000 });
    await assertAccessible(page, `after the guided scenario, ${scheme}`);
    await page.context().close();
  }
});

/** WCAG contrast ratio of two computed `rgb(…)` colours. */
function contrast(a, b) {
  const luminance = (rgb) => {
    const [r, g, bl] = rgb.match(/[\d.]+/g).slice(0, 3).map((v) => {
      const c = Number(v) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [high, low] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (high + 0.05) / (low + 0.05);
}

for (const scheme of SCHEMES) {
  test(`every control the keyboard reaches shows a focus ring that stands out (${scheme})`, { timeout: 60000 }, async () => {
    const page = await open('websocket', 'desktop', scheme);
    const seen = [];
    for (let press = 0; press < 60; press += 1) {
      await page.keyboard.press('Tab');
      const ring = await page.evaluate(() => {
        const focused = document.activeElement;
        if (!focused || focused === document.body) return null;
        // The toggle's and the switch's inputs are invisible: their label or track shows the ring.
        const shown = focused.matches('.toggle input, .switch input') ? focused.nextElementSibling : focused;
        const opaque = (node) => {
          for (; node; node = node.parentElement) {
            const bg = getComputedStyle(node).backgroundColor;
            if (!/rgba?\(.*,\s*0\)$/.test(bg) && bg !== 'transparent') return bg;
          }
          return getComputedStyle(document.body).backgroundColor;
        };
        const style = getComputedStyle(shown);
        const inset = style.boxShadow.includes('inset') ? style.boxShadow.match(/rgba?\([^)]*\)/)?.[0] : null;
        return {
          name: `${focused.tagName.toLowerCase()}#${focused.id || focused.className || focused.textContent.trim().slice(0, 20)}`,
          outline: style.outlineStyle,
          width: parseFloat(style.outlineWidth),
          colour: style.outlineColor,
          inset,
          own: opaque(shown),
          around: opaque(shown.parentElement),
        };
      });
      if (!ring || seen.some((r) => r.name === ring.name)) break;
      seen.push(ring);
    }
    assert.ok(seen.length >= 8, `the keyboard reached only ${seen.map((r) => r.name).join(', ')}`);
    for (const ring of seen) {
      assert.notEqual(ring.outline, 'none', `${ring.name} has no focus ring`);
      assert.ok(ring.width >= 2, `${ring.name}: focus ring ${ring.width}px`);
      // WCAG's 3:1 for what must be seen: the ring against what is around the control,
      // and against the control's own fill (or an inner ring that is).
      assert.ok(contrast(ring.colour, ring.around) >= 3, `${ring.name}: ring ${ring.colour} on ${ring.around}`);
      const standsOut = [ring.colour, ring.inset].some((c) => c && contrast(c, ring.own) >= 3);
      assert.ok(standsOut, `${ring.name}: ring ${ring.colour} (inner ${ring.inset}) on its own fill ${ring.own}`);
    }
    await page.context().close();
  });
}
