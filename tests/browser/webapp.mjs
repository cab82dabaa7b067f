// webapp.mjs - drives the web app in Debian's Chromium with playwright-core
// against a running stack (tests/integration/test_web.py starts it and runs
// this). Prints one JSON line with what the caller checks server-side
// (the query id and feedback comment), screenshots into QUARRY_ARTIFACTS.
//
// Environment: QUARRY_URL (gateway), QUARRY_KEY (a valid API key),
// QUARRY_ARTIFACTS (screenshot folder), QUARRY_FILES (two files to upload,
// ':'-separated), QUARRY_QUESTION, QUARRY_EXPECT (text the answer holds),
// QUARRY_EXPECT_TITLE (title of the cited document), QUARRY_FILTER_QUESTION
// (answered by two documents told apart by metadata and type),
// QUARRY_FILTER_ALLOWED / _EXCLUDED (what each answers) and their _TITLEs,
// QUARRY_PLAYWRIGHT
// (the playwright-core module path), QUARRY_CHROMIUM (the browser).
// Exit 0 when every step passed; 3 when Chromium cannot start.
import { createRequire } from 'node:module';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const env = (k) => {
  if (!process.env[k]) throw new Error(k + ' is not set');
  return process.env[k];
};
const require = createRequire(import.meta.url);
const { chromium } = require(env('QUARRY_PLAYWRIGHT'));
const base = env('QUARRY_URL');
const shots = env('QUARRY_ARTIFACTS');
const comment = 'browser-test-' + Math.random().toString(16).slice(2, 10);

let context;
try {
  context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'quarry-chromium-')), {
    executablePath: process.env.QUARRY_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1100, height: 900 },
  });
} catch (e) {
  console.error('CHROMIUM_UNAVAILABLE: ' + e.message.split('\n')[0]);
  process.exit(3);
}

const step = (name) => console.error('browser: ' + name);
const problems = [];
const foreign = [];
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(20000);
let refusalExpected = false; // once a step makes the gateway answer a query 400
page.on('console', (m) => {
  // The sign-in's expected refusal (401 for the bad key), and the 400 of a
  // filter the gateway refuses, are logged by Chromium as failed loads.
  const url = m.location().url || '';
  const expected = (/status of 401 /.test(m.text()) && /\/v1\/me$/.test(url)) ||
    (refusalExpected && /status of 400 /.test(m.text()) && /\/v1\/query$/.test(url));
  if (m.type() === 'error' && !expected) problems.push('console: ' + m.text() + ' ' + (m.location().url || ''));
});
page.on('pageerror', (e) => problems.push('page error: ' + e.message));
page.on('request', (r) => {
  if (!r.url().startsWith(base) && !r.url().startsWith('data:')) foreign.push(r.url());
});
const expect = async (cond, what) => {
  if (!(await cond)) throw new Error('expected ' + what);
};

try {
  step('a bad key shows an error');
  await page.goto(base + '/');
  await page.getByLabel('API key').fill('qk_not-a-real-key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#signin-error').filter({ hasText: 'not accepted' }).waitFor();
  await page.screenshot({ path: join(shots, 'web-bad-key.png') });

  step('sign in');
  await page.getByLabel('API key').fill(env('QUARRY_KEY'));
  await page.keyboard.press('Enter');
  await page.locator('#view-ask').waitFor();
  await expect(page.evaluate(() => sessionStorage.getItem('quarry.apiKey') !== null), 'key in sessionStorage');
  await expect(page.evaluate(() => localStorage.length === 0), 'nothing in localStorage');

  step('upload two files and watch them reach done');
  await page.getByRole('button', { name: 'Documents' }).click();
  const files = env('QUARRY_FILES').split(':');
  await page.locator('#files').setInputFiles(files);
  // And one more dropped on the drop zone, as a file manager would.
  await page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['Cellar notes\n\nThe cellar key hangs by the north door.\n'],
      'dropped-notes.txt', { type: 'text/plain' }));
    document.getElementById('dropzone').dispatchEvent(
      new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  const items = page.locator('#uploads li');
  await items.nth(files.length).waitFor();
  for (let i = 0; i <= files.length; i++)
    await items.nth(i).and(page.locator('[data-state="done"]')).waitFor({ timeout: 60000 });
  const states = await items.locator('.state').allTextContents();
  await expect(states.every((s) => s.startsWith('done')), 'every upload done: ' + states);
  await expect(page.locator('#uploads progress').evaluateAll((ps) => ps.every((p) => p.value === 100)),
    'every progress bar full');
  await page.screenshot({ path: join(shots, 'web-documents.png') });

  step('the document list: every upload listed, search, delete with confirmation');
  const rows = page.locator('#doc-rows tr');
  await page.getByRole('button', { name: 'Search' }).click();
  await rows.filter({ hasText: 'dropped-notes.txt' }).waitFor();
  for (const f of files) {
    const name = f.split('/').pop();
    await expect(rows.filter({ hasText: name }).count().then((n) => n >= 1), name + ' is listed');
  }
  await page.getByLabel('Title or file name').fill('DROPPED-NOTES');
  await page.getByLabel('Title or file name').press('Enter');
  await page.waitForFunction(() => document.querySelectorAll('#doc-rows tr').length === 1);
  await expect(rows.first().textContent().then((t) => t.includes('dropped-notes.txt')), 'the search finds it');
  await page.getByLabel('State').selectOption('failed');
  await page.locator('#doc-status').filter({ hasText: 'No documents match' }).waitFor();
  await page.getByLabel('State').selectOption('done');
  await rows.filter({ hasText: 'dropped-notes.txt' }).waitFor();
  // Keyboard: Tab to the row's Delete button, Enter opens the dialog; Escape keeps it.
  const del = rows.first().getByRole('button', { name: /^Delete / });
  await del.focus();
  await page.keyboard.press('Enter');
  await page.locator('#confirm-delete[open]').waitFor();
  await page.screenshot({ path: join(shots, 'web-delete-confirm.png') });
  await page.keyboard.press('Escape');
  await page.locator('#confirm-delete:not([open])').waitFor({ state: 'attached' });
  await expect(rows.count().then((n) => n === 1), 'Escape keeps the document');
  await del.click();
  await page.locator('#confirm-ok').click();
  await page.locator('#doc-status').filter({ hasText: 'Deleted' }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll('#doc-rows tr').length === 0);
  await page.getByLabel('Title or file name').fill('');
  await page.getByLabel('State').selectOption('');
  await page.getByRole('button', { name: 'Search' }).click();
  await rows.first().waitFor();
  await expect(rows.filter({ hasText: 'dropped-notes.txt' }).count().then((n) => n === 0),
    'the deleted document is gone from the list');
  await page.screenshot({ path: join(shots, 'web-doclist.png') });

  step('ask: streamed answer with a citation');
  await page.getByRole('button', { name: 'Ask' , exact: true }).first().click();
  await page.getByLabel('Question').fill(env('QUARRY_QUESTION'));
  await page.getByLabel('Question').press('Enter');
  const answer = page.locator('.answer').last();
  await answer.and(page.locator(':not(.streaming)')).waitFor({ timeout: 30000 });
  const text = await answer.locator('.answer-text').textContent();
  await expect(text.includes(env('QUARRY_EXPECT')), 'answer holding ' + env('QUARRY_EXPECT') + ': ' + text);
  await expect(!(await answer.evaluate((a) => a.classList.contains('unknown') || a.classList.contains('failed'))),
    'a plain answer');
  const tokens = Number(await answer.getAttribute('data-tokens'));
  await expect(tokens > 1, 'the answer streamed in several token events, not ' + tokens);
  const cite = answer.locator('.answer-text .cite').first();
  await cite.waitFor();
  await cite.focus();
  await page.keyboard.press('Enter');
  const dialog = page.locator('#passage');
  await dialog.waitFor();
  const title = await page.locator('#passage-title').textContent();
  await expect(title.includes(env('QUARRY_EXPECT_TITLE')), 'the cited passage of ' + env('QUARRY_EXPECT_TITLE') + ': ' + title);
  const snippet = await page.locator('#passage-snippet').textContent();
  await expect(snippet.includes(env('QUARRY_EXPECT')), 'the passage holding the answer: ' + snippet);
  await expect(page.locator('#passage-snippet mark').count().then((n) => n > 0), 'highlighted words');
  await page.screenshot({ path: join(shots, 'web-passage.png') });
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });

  step('timings on demand');
  await answer.getByText('Timings').click();
  await answer.locator('.timings').getByText('retrieve').waitFor();
  // The default stack answers with the built-in extractive answerer.
  await answer.locator('.timings .answered-by').getByText('extractive / quarry-extractive').waitFor();

  step('feedback');
  await answer.getByRole('button', { name: 'Helpful', exact: true }).click();
  await answer.getByLabel('Comment (optional)').fill(comment);
  await answer.getByRole('button', { name: 'Send feedback' }).click();
  await answer.getByText('feedback recorded').waitFor();
  const queryId = await answer.getAttribute('data-query-id');
  await page.screenshot({ path: join(shots, 'web-answer.png') });

  step('a question the documents cannot answer looks different');
  await page.getByLabel('Question').fill('zyxwv qwertzuiop plonkification?');
  await page.getByLabel('Question').press('Enter');
  const unknown = page.locator('.answer').last();
  await unknown.and(page.locator(':not(.streaming)')).waitFor({ timeout: 30000 });
  await expect(unknown.evaluate((a) => a.classList.contains('unknown')), 'the "not found" state');
  await page.screenshot({ path: join(shots, 'web-unknown.png') });

  step('the filter control, by keyboard: type and metadata row');
  const sent = []; // the filter of each POST /v1/query from here on
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url() === base + '/v1/query') sent.push(JSON.parse(r.postData()).filter);
  });
  const hotel = env('QUARRY_FILTER_QUESTION');
  const asked = async (q) => {
    await page.getByLabel('Question').fill(q);
    await page.getByLabel('Question').press('Enter');
    const a = page.locator('.answer').last();
    await a.and(page.locator(':not(.streaming)')).waitFor({ timeout: 30000 });
    return a;
  };
  const sources = (a) => a.locator('.sources .source').allTextContents();
  // Asking closes the filter panel (its summary line stays); this opens it.
  const openFilter = async () => {
    if (!(await page.locator('#ask-filter').evaluate((d) => d.open))) await page.locator('#ask-filter summary').click();
    await page.locator('#ask-filter[open]').waitFor();
  };
  await page.locator('#ask-filter summary').focus();
  await page.keyboard.press('Enter');
  await page.locator('#ask-filter[open]').waitFor();
  await page.keyboard.press('Tab'); // to the type select
  await expect(page.evaluate(() => document.activeElement.id === 'ask-type'), 'Tab reaches the type select');
  await page.getByLabel('Document type').selectOption('text/markdown');
  await page.getByRole('button', { name: 'Add metadata condition' }).focus();
  await page.keyboard.press('Enter');
  await expect(page.evaluate(() => document.activeElement.id === 'ask-meta-key-1'), 'a new row takes the focus');
  await page.keyboard.type('team');
  await page.keyboard.press('Tab');
  await page.keyboard.type('legal');
  await page.locator('#ask-filter-summary').filter({ hasText: 'Markdown · team = legal' }).waitFor();
  await page.screenshot({ path: join(shots, 'web-filter.png') });
  let a = await asked(hotel);
  let ftext = await a.locator('.answer-text').textContent();
  await expect(ftext.includes(env('QUARRY_FILTER_ALLOWED')), 'the legal answer (' +
    env('QUARRY_FILTER_ALLOWED') + '): ' + ftext);
  await expect(!ftext.includes(env('QUARRY_FILTER_EXCLUDED')), 'nothing of the excluded document: ' + ftext);
  let cited = await sources(a);
  await expect(cited.length > 0 && cited.every((c) => c.includes(env('QUARRY_FILTER_ALLOWED_TITLE'))),
    'only ' + env('QUARRY_FILTER_ALLOWED_TITLE') + ' cited: ' + cited.join(' | '));
  await expect(JSON.stringify(sent.at(-1)) === JSON.stringify({ and: [
    { field: 'content_type', eq: 'text/markdown' }, { field: 'meta.team', eq: 'legal' }] }),
  'the filter sent: ' + JSON.stringify(sent.at(-1)));
  await page.locator('.turn').last().locator('.filtered').filter({ hasText: 'team = legal' }).waitFor();
  await page.locator('.turn').last().scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(shots, 'web-filtered-answer.png') });

  step('another metadata value and any type: the other document only');
  await expect(page.locator('#ask-filter').evaluate((d) => !d.open), 'asking closes the filter panel');
  await page.locator('#ask-filter-summary').filter({ hasText: 'Markdown · team = legal' }).waitFor();
  await openFilter();
  await page.getByLabel('Document type').selectOption('');
  await page.getByLabel('Value of condition 1').fill('finance');
  a = await asked(hotel);
  ftext = await a.locator('.answer-text').textContent();
  await expect(ftext.includes(env('QUARRY_FILTER_EXCLUDED')) && !ftext.includes(env('QUARRY_FILTER_ALLOWED')),
    'the finance answer: ' + ftext);
  cited = await sources(a);
  await expect(cited.length > 0 && cited.every((c) => c.includes(env('QUARRY_FILTER_EXCLUDED_TITLE'))),
    'only ' + env('QUARRY_FILTER_EXCLUDED_TITLE') + ' cited: ' + cited.join(' | '));

  step('a date range no document is in: not found');
  await openFilter();
  await page.getByLabel('Created from').fill('2099-01-01');
  await page.getByLabel('Created until').fill('2099-12-31');
  a = await asked(hotel);
  await expect(a.evaluate((x) => x.classList.contains('unknown')), 'the "not found" state');
  await expect(JSON.stringify(sent.at(-1)) === JSON.stringify({ and: [
    { field: 'created_at', gte: '2099-01-01', lt: '2100-01-01' }, { field: 'meta.team', eq: 'finance' }] }),
  'the dates sent: ' + JSON.stringify(sent.at(-1)));

  step('a metadata key the gateway refuses: its 400 message shown');
  await openFilter();
  await page.getByLabel('Created from').fill('');
  await page.getByLabel('Created until').fill('');
  await page.getByLabel('Key of condition 1').fill('te am');
  refusalExpected = true; // from here on: Chromium may log it after the answer shows
  a = await asked(hotel);
  await expect(a.evaluate((x) => x.classList.contains('failed')), 'the failed state');
  const why = await a.locator('.state').textContent();
  await expect(why.includes('unknown field') && why.includes('meta.te am'), 'the gateway\'s reason: ' + why);

  step('phone width');
  await page.setViewportSize({ width: 375, height: 800 });
  await openFilter();
  await page.getByRole('button', { name: 'Add metadata condition' }).click();
  await expect(page.evaluate(() => document.documentElement.scrollWidth <= 375),
    'no horizontal scrolling with the filter open');
  await page.screenshot({ path: join(shots, 'web-phone-filter.png') });
  await page.getByRole('button', { name: 'Remove condition 2' }).click();
  await page.getByRole('button', { name: 'Clear filter' }).click();
  await expect(page.evaluate(() => document.querySelectorAll('#ask-meta li').length === 0 &&
    document.getElementById('ask-filter-summary').textContent === ''), 'the filter cleared');
  await page.locator('#ask-filter summary').click();
  await page.locator('#ask-filter:not([open])').waitFor({ state: 'attached' });
  await expect(page.evaluate(() => document.documentElement.scrollWidth <= 375), 'no horizontal scrolling');
  await page.screenshot({ path: join(shots, 'web-phone.png') });
  await page.getByRole('button', { name: 'Documents' }).click();
  await rows.first().waitFor();
  await expect(page.evaluate(() => document.documentElement.scrollWidth <= 375),
    'no horizontal scrolling in the document list');
  await page.screenshot({ path: join(shots, 'web-phone-documents.png'), fullPage: true });

  await expect(foreign.length === 0, 'no third-party requests: ' + foreign.join(' '));
  await expect(problems.length === 0, 'no console or page errors: ' + problems.join(' | '));
  console.log(JSON.stringify({ ok: true, comment, query_id: queryId }));
  await context.close();
} catch (e) {
  await page.screenshot({ path: join(shots, 'web-failure.png') }).catch(() => {});
  console.error('browser test failed: ' + e.message);
  if (problems.length) console.error(problems.join('\n'));
  await context.close();
  process.exit(1);
}
