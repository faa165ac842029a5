// Draws the screenshots of the demo for docs/: the page in race mode after a burst of
// 20 messages over a link with a 300 ms round trip, at desktop and phone widths, with
// the wire timeline in view. Not a test; rerun it after changing the page:
//
//   cd tests/browser && node screenshots.js [output directory, default docs/]
'use strict';

const path = require('node:path');
const { launchBrowser, openChat, startServer } = require('./harness.js');

const OUT = path.resolve(process.argv[2] ?? path.join(__dirname, '..', '..', 'docs'));
const SHOTS = [
  { name: 'demo-desktop.png', viewport: { width: 1280, height: 900 } },
  { name: 'demo-phone.png', viewport: { width: 390, height: 844 } },
];

async function main() {
  const server = await startServer('127.0.0.1:0', ['--emulate-rtt', '300ms']);
  const browser = await launchBrowser();
  try {
    for (const { name, viewport } of SHOTS) {
      const page = await openChat(browser, server.url, { viewport, transport: 'websocket' });
      await page.click('label[for="race"]');
      // WebTransport is unavailable over an emulated link (it delays TCP only).
      await page.waitForFunction(() => document.querySelectorAll('#hood td.running .state-live').length === 3);
      await page.click('#burst');
      // Every transport has delivered the whole burst, and the timeline has drawn it.
      await page.waitForFunction(() => document.querySelector('#burst-progress').textContent === '20 sent');
      await page.waitForFunction(
        () =>
          document.querySelectorAll('#race-table tbody tr').length >= 20 &&
          document.querySelectorAll('#race-table td:not(.t-webtransport):not([data-arrived])').length === 0,
        null,
        { timeout: 30000 },
      );
      await page.waitForTimeout(1000);
      // The timeline at the top of the picture (on a phone it is below the chat).
      await page.evaluate(() => {
        document.querySelector('.timeline-card').scrollIntoView({ block: 'start' });
        window.scrollBy(0, -12);
      });
      await page.screenshot({ path: path.join(OUT, name), animations: 'disabled' });
      console.log(`wrote ${path.join(OUT, name)}`);
      await page.context().close();
    }
  } finally {
    await browser.close();
    await server.stop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
