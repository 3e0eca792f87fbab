// Renders the web app's PNG icons from SVG with Debian's Chromium. Run once after changing
// the design (node src/fronts/app/make-icons.mjs); the PNGs are committed.
import { writeFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const dir = new URL('./static/icons/', import.meta.url).pathname;
const shield = 'M256 84 394 136v112c0 90-58 152-138 184-80-32-138-94-138-184V136z';
const check = 'm188 262 50 50 88-96';
const NAVY = '#17325c';
const GREEN = '#1f8f5a';

/** The mark on a full square: maskable icons keep it inside the central safe circle (scale). */
const square = (scale) => `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 512 512">
  <rect width="512" height="512" fill="${NAVY}"/>
  <g transform="translate(256 258) scale(${scale}) translate(-256 -258)">
    <path d="${shield}" fill="#fff"/>
    <path d="${check}" fill="none" stroke="${GREEN}" stroke-width="38" stroke-linecap="round" stroke-linejoin="round"/>
  </g>
</svg>`;

/** Notification badge: one colour on transparent (Android draws only its alpha). */
const badge = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 512 512">
  <mask id="m"><rect width="512" height="512" fill="#fff"/><path d="${check}" fill="none" stroke="#000" stroke-width="44" stroke-linecap="round" stroke-linejoin="round"/></mask>
  <path d="${shield}" transform="translate(256 258) scale(1.12) translate(-256 -258)" fill="#fff" mask="url(#m)"/>
</svg>`;

const rounded = new URL('./static/icons/icon.svg', import.meta.url);
const { readFileSync } = await import('node:fs');
const icon = readFileSync(rounded, 'utf8');

const jobs = [
  ['icon-192.png', icon, 192, true],
  ['icon-512.png', icon, 512, true],
  ['maskable-512.png', square(0.66), 512, false],
  ['apple-touch-icon.png', square(0.8), 180, false],
  ['badge-96.png', badge, 96, true],
];

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
try {
  for (const [name, svg, size, transparent] of jobs) {
    const page = await browser.newPage({ viewport: { width: size, height: size }, deviceScaleFactor: 1 });
    const url = `data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}`;
    await page.setContent(`<style>html,body{margin:0;background:transparent}img{display:block}</style><img src="${url}" width="${size}" height="${size}">`);
    await page.locator('img').evaluate((img) => img.decode());
    writeFileSync(`${dir}${name}`, await page.screenshot({ omitBackground: transparent, clip: { x: 0, y: 0, width: size, height: size } }));
    await page.close();
  }
} finally {
  await browser.close();
}
console.log(`wrote ${jobs.map((j) => j[0]).join(', ')} to ${dir}`);
