import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
const [file, ...args] = process.argv.slice(2);
const page = await browser.newPage();
const lines = [];
page.on('console', (m) => lines.push(m.text()));
await page.setContent('<html><body></body></html>');
await page.addScriptTag({ content: readFileSync(file, 'utf8') });
await page.waitForFunction(() => typeof Module !== 'undefined' && Module.callMain && Module.calledRun !== undefined);
await page.waitForTimeout(300);
for (const a of args) { await page.evaluate((a) => Module.callMain(a.split(' ')), a); console.log(lines.join('\n')); lines.length = 0; }
await browser.close();
