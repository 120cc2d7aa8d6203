// CLI pieces tested in-process: folder walks, warning lines, the --threads limit.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { InvalidArgumentError } from 'commander';
import { warn } from '../src/cli/errors.js';
import { expandImages } from '../src/cli/inputs.js';
import { MAX_THREADS_PER_CORE, threadCount } from '../src/cli/shared.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-cli-units-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('a folder walk leaves out hidden files and folders (.git/), keeps named hidden files, follows file links', () => {
  const dir = path.join(tmp, 'photos');
  const files = ['a.jpg', 'sub/b.png', '.hidden.jpg', '.git/objects/c.jpg', 'sub/.thumbs/d.jpg', '._e.jpg', 'notes.txt'];
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), 'x');
  }
  fs.symlinkSync(path.join(dir, 'a.jpg'), path.join(dir, 'link.jpg'));
  fs.symlinkSync(path.join(dir, 'missing.jpg'), path.join(dir, 'dangling.jpg'));
  assert.deepEqual(expandImages([dir]), ['a.jpg', 'link.jpg', 'sub/b.png'].map((f) => path.join(dir, f)));
  // named on the command line, a hidden file is used
  assert.deepEqual(expandImages([path.join(dir, '.hidden.jpg')]), [path.join(dir, '.hidden.jpg')]);
  fs.mkdirSync(path.join(tmp, 'only-hidden/.git'), { recursive: true });
  fs.writeFileSync(path.join(tmp, 'only-hidden/.git/x.jpg'), 'x');
  assert.throws(() => expandImages([path.join(tmp, 'only-hidden')]), /folder holds no images/);
});

test('warnings say "altclip: warning:" once, also for library warnings that name the package', (t) => {
  const written: string[] = [];
  t.mock.method(process.stderr, 'write', (chunk: string) => {
    written.push(chunk);
    return true;
  });
  warn('altclip: rebuilding x.onnx: truncated');
  warn('altclip: warning: twice');
  warn('Some weights of the model checkpoint were not used');
  t.mock.restoreAll();
  assert.deepEqual(written, [
    'altclip: warning: rebuilding x.onnx: truncated\n',
    'altclip: warning: twice\n',
    'altclip: warning: Some weights of the model checkpoint were not used\n',
  ]);
});

test(`--threads: up to ${MAX_THREADS_PER_CORE} per core; more is refused naming the core count`, () => {
  const cores = os.availableParallelism();
  assert.equal(threadCount(String(cores * MAX_THREADS_PER_CORE)), cores * MAX_THREADS_PER_CORE);
  assert.throws(() => threadCount('1000000'), (e: Error) => e instanceof InvalidArgumentError && e.message.includes(`machine with ${cores} core`));
  assert.throws(() => threadCount('0'), InvalidArgumentError);
});
