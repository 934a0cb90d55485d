// Doors in the workspace (issue 8 finding 2): nothing a session writes may steer the host's git or a shell
// a person later runs there, and protection leaves no litter. Checked with the host's real git after a
// hostile session, as root and unprivileged. Doors that exist are read-only inside (config, hooks, info,
// a `.git` file, shell rc files; `.git` cannot be renamed away); doors the session makes (a whole new
// `.git`, hooks/ where there was none, commondir, config.worktree, modules/, worktrees/, rc files) are
// moved aside when it ends. The session's own git keeps working, and its commits stay. Below the top, a
// repository the session made (`sub/.git`, a bare one) is moved aside, and in one that was there each door
// it changed. A door-keeper process does the end, so it happens even when postern itself is SIGKILLed.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { rmrf } from './lib/proc.mjs';
import { NOBODY, sbxMode, sbxRun } from './lib/sandbox.mjs';

const ENV = { PATH: process.env.PATH, HOME: '/nonexistent', GIT_CONFIG_NOSYSTEM: '1' };
const ID = ['-c', 'user.email=t@example.invalid', '-c', 'user.name=t', '-c', 'safe.directory=*'];
const git = (ws, ...args) => execFileSync('git', [...ID, '-C', ws, ...args], { encoding: 'utf8', env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const gitTry = (ws, ...args) => { try { return { ok: true, out: git(ws, ...args) }; } catch (e) { return { ok: false, out: `${e.stdout}${e.stderr}` }; } };

for (const unpriv of [false, true]) {
  const mode = sbxMode(unpriv, 'sbx-git-');
  describe(`workspace doors as ${mode.name}`, () => {
    let marks;
    const fresh = (name) => {
      const ws = path.join(mode.dir, name);
      mkdirSync(ws);
      return ws;
    };
    const own = (ws) => { if (unpriv) execFileSync('chown', ['-R', `${NOBODY}:${NOBODY}`, ws]); };
    const run = async (ws, script) => {
      const r = await sbxRun(mode, ['--workspace', ws, '--', 'sh', '-c', script], { quiet: false });
      return r;
    };
    const noMarks = () => assert.deepEqual(readdirSync(marks), [], 'a host tool ran a command the session chose');
    before(() => {
      mode.setup();
      marks = path.join(mode.dir, 'marks');
      mkdirSync(marks, { mode: 0o777 });
    });
    after(() => rmrf(mode.dir));

    test('no litter: a run leaves a fresh workspace as it was, and git init works inside', async () => {
      const ws = fresh('empty');
      own(ws);
      const r = await run(ws, 'ls -A; echo listed');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'listed\n');
      assert.deepEqual(readdirSync(ws), []);
    });

    test('a repository the session makes is moved aside whole; host git then sees none', async () => {
      const ws = fresh('made');
      own(ws);
      const r = await run(ws, `git init -q && git config core.fsmonitor "touch ${marks}/fsmonitor; false" && ` +
        `printf '#!/bin/sh\\ntouch ${marks}/hook\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit && ` +
        'echo x > f && git add f && git -c user.email=a@b -c user.name=n commit --no-verify -qm inside && echo committed');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /committed/);
      assert.match(r.stderr, /the session made a file that steers host tools; moved aside" workspace="[^"]+" path=".git" now=".git.postern-quarantine-1"/);
      assert.equal(existsSync(path.join(ws, '.git')), false);
      assert.ok(existsSync(path.join(ws, '.git.postern-quarantine-1', 'config')), 'moved, not deleted');
      const st = gitTry(ws, 'status');
      assert.equal(st.ok, false);
      assert.match(st.out, /not a git repository/);
      noMarks();
    });

    test('an existing repository: its doors are closed, the session\'s git works, host git runs nothing chosen', async () => {
      const ws = fresh('repo');
      git(ws, 'init', '-q');
      writeFileSync(path.join(ws, 'a'), 'a\n');
      git(ws, 'add', 'a');
      git(ws, 'commit', '-qm', 'base');
      rmSync(path.join(ws, '.git', 'hooks'), { recursive: true, force: true }); // a door the session could make
      own(ws);
      const fsm = `[core]\\n\\tfsmonitor = touch ${marks}/fsmonitor\\n`;
      const r = await run(ws, [
        `(printf '${fsm}' >> .git/config) 2>/dev/null && echo config-written`,
        'mv .git .git-away 2>/dev/null && echo git-renamed',
        `(printf '${fsm}' > .git/info/attributes-door) 2>/dev/null && echo info-written`,
        'echo b >> a && git add a && git -c user.email=a@b -c user.name=n commit -qm inside && echo committed',
        `mkdir -p .git/hooks && printf '#!/bin/sh\\ntouch ${marks}/hook\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit && echo hook-made`,
        `printf '${fsm}' > .git/config.worktree && echo worktree-config-made`,
        `mkdir -p evil && printf '${fsm}' > evil/config && echo ../evil > .git/commondir && echo commondir-made`,
        'true',
      ].join('; '));
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout, /config-written|git-renamed|info-written/);
      assert.match(r.stdout, /committed\nhook-made\nworktree-config-made\ncommondir-made\n/);
      for (const p of ['.git/hooks/', '.git/commondir', '.git/config.worktree'])
        assert.ok(r.stderr.includes(`path="${p}"`), `${p} not moved aside: ${r.stderr}`);
      // The host's git: status, diff and commit (which would run a pre-commit hook) run nothing chosen.
      git(ws, 'status', '--porcelain');
      git(ws, 'diff');
      git(ws, 'commit', '-q', '--allow-empty', '-m', 'host');
      noMarks();
      assert.match(git(ws, 'log', '--format=%s'), /^host\ninside\nbase\n$/);
      assert.ok(existsSync(path.join(ws, '.git', 'commondir.postern-quarantine-1')));
    });

    test('shell start-up files: existing ones read-only, new ones moved aside', async () => {
      const ws = fresh('shell');
      writeFileSync(path.join(ws, '.bashrc'), '# host\n');
      own(ws);
      const r = await run(ws, `(echo "touch ${marks}/bashrc" >> .bashrc) 2>/dev/null && echo bashrc-written; ` +
        `echo "touch ${marks}/profile" > .profile && echo "touch ${marks}/zshenv" > .zshenv && echo made`);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /made\n$/); // before: what the session's own git ran inside (no marks dir there)
      assert.equal(readFileSync(path.join(ws, '.bashrc'), 'utf8'), '# host\n');
      assert.deepEqual(readdirSync(ws).sort(), ['.bashrc', '.profile.postern-quarantine-1', '.zshenv.postern-quarantine-1']);
      execFileSync('bash', ['-lc', 'true'], { env: { ...ENV, HOME: ws }, cwd: ws });
      noMarks();
    });

    test('nested: a gitlink to a repository the session made, and a deeper new one, are moved aside', async () => {
      const ws = fresh('gitlink');
      git(ws, 'init', '-q');
      writeFileSync(path.join(ws, 'a'), 'a\n');
      git(ws, 'add', 'a');
      git(ws, 'commit', '-qm', 'base');
      own(ws);
      const C = '-c user.email=a@b -c user.name=n';
      const r = await run(ws, [
        'mkdir -p sub deep/er && git -C sub init -q',
        `git -C sub config core.fsmonitor "touch ${marks}/fsmonitor-sub; false"`,
        `echo s > sub/f && git -C sub add f && git -C sub ${C} commit -qm s`,
        'git update-index --add --cacheinfo 160000,$(git -C sub rev-parse HEAD),sub',
        `git -C deep/er init -q && printf '#!/bin/sh\\ntouch ${marks}/hook-deep\\n' > deep/er/.git/hooks/pre-commit && chmod +x deep/er/.git/hooks/pre-commit`,
        `git -C deep/er config core.fsmonitor "touch ${marks}/fsmonitor-deep; false"`,
        'echo made',
      ].join(' && '));
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /made\n$/); // before: what the session's own git ran inside (no marks dir there)
      for (const p of ['sub/.git', 'deep/er/.git'])
        assert.ok(r.stderr.includes(`path="${p}" now=".postern-quarantine/${p.replaceAll('/', '%')}-1"`), `${p} not moved aside: ${r.stderr}`);
      assert.ok(existsSync(path.join(ws, '.postern-quarantine', 'sub%.git-1', 'config')), 'moved, not deleted');
      // The index still has the gitlink: host git recurses into it, and finds no repository there now.
      assert.match(git(ws, 'ls-files', '-s', 'sub'), /^160000 /);
      git(ws, 'status');
      git(ws, 'diff');
      gitTry(path.join(ws, 'deep', 'er'), 'status');
      git(ws, 'commit', '-q', '--allow-empty', '-m', 'host');
      noMarks();
    });

    test('nested: a repository that was there keeps what it had; the doors the session changed are moved aside', async () => {
      const ws = fresh('nested-old');
      for (const d of ['sub', 'other']) {
        mkdirSync(path.join(ws, d));
        git(path.join(ws, d), 'init', '-q');
        writeFileSync(path.join(ws, d, 'f'), 'f\n');
        git(path.join(ws, d), 'add', 'f');
        git(path.join(ws, d), 'commit', '-qm', 'base');
      }
      own(ws);
      await sleep(50); // the host's own changes are well before the session's start
      const fsm = `[core]\\n\\tfsmonitor = touch ${marks}/fsmonitor-old\\n`;
      const r = await run(ws, [
        `printf '${fsm}' >> sub/.git/config`,
        `printf '#!/bin/sh\\ntouch ${marks}/hook-old\\n' > sub/.git/hooks/pre-commit && chmod +x sub/.git/hooks/pre-commit`,
        'echo g >> sub/f && git -C sub add f && git -C sub -c core.fsmonitor=false -c user.email=a@b -c user.name=n commit --no-verify -qm inside 2>/dev/null',
        'echo made',
      ].join(' && '));
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /made\n$/); // before: what the session's own git ran inside (no marks dir there)
      for (const p of ['sub/.git/config', 'sub/.git/hooks/'])
        assert.ok(r.stderr.includes(`path="${p}"`), `${p} not moved aside: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /path="other/, 'a repository the session did not touch is left alone');
      assert.ok(existsSync(path.join(ws, 'other', '.git', 'config')));
      assert.ok(existsSync(path.join(ws, 'sub', '.git', 'config.postern-quarantine-1')));
      const sub = path.join(ws, 'sub');
      git(sub, 'status');
      git(sub, 'diff');
      git(sub, 'commit', '-q', '--allow-empty', '-m', 'host');
      assert.match(git(sub, 'log', '--format=%s'), /^host\ninside\nbase\n$/, 'the session\'s commit is kept');
      noMarks();
    });

    test('nested: a directory the session made into a bare repository loses its HEAD', async () => {
      const ws = fresh('bare');
      mkdirSync(path.join(ws, 'tools'));
      writeFileSync(path.join(ws, 'tools', 'x'), 'x\n');
      own(ws);
      const r = await run(ws, [
        'git init -q --bare tools', 'git -C tools config core.bare false', 'git -C tools config core.worktree ..',
        `git -C tools config core.fsmonitor "touch ${marks}/fsmonitor-bare; false"`, 'echo made',
      ].join(' && '));
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stderr.includes('path="tools/HEAD" now="tools/HEAD.postern-quarantine-1"'), r.stderr);
      const st = gitTry(path.join(ws, 'tools'), 'status');
      assert.equal(st.ok, false);
      assert.match(st.out, /not a git repository/);
      noMarks();
    });

    test('nested: a later session cannot bring back a repository an earlier one had moved aside', async () => {
      const ws = fresh('restore');
      git(ws, 'init', '-q');
      own(ws);
      let r = await run(ws, `mkdir sub && git -C sub init -q && git -C sub config core.fsmonitor "touch ${marks}/restored; false" && echo made`);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(existsSync(path.join(ws, '.postern-quarantine', 'sub%.git-1', 'config')));
      // The second session tries to rename it back (it would look older than its start), then to copy it.
      r = await run(ws, [
        '(mv .postern-quarantine/sub%.git-1 sub/.git || mv sub/.git.postern-quarantine-1 sub/.git) 2>/dev/null && echo renamed',
        '(mkdir -p .postern-quarantine/x) 2>/dev/null && echo wrote-inside',
        'true',
      ].join('; '));
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout, /renamed|wrote-inside/);
      // (mv falls back to a copy across the read-only mount: that copy is new, and moved aside again)
      assert.equal(existsSync(path.join(ws, 'sub', '.git')), false);
      gitTry(path.join(ws, 'sub'), 'status');
      r = await run(ws, 'cp -a .postern-quarantine/sub%.git-1 sub/.git && echo copied');
      assert.match(r.stdout, /copied/);
      assert.match(r.stderr, /path="sub\/\.git" now="\.postern-quarantine\/sub%\.git-\d+"/);
      assert.equal(existsSync(path.join(ws, 'sub', '.git')), false);
      gitTry(path.join(ws, 'sub'), 'status');
      git(ws, 'status');
      noMarks();
    });

    test('SIGKILL of postern mid-session: the door-keeper still moves the doors, then exits', async () => {
      const ws = fresh('killed');
      git(ws, 'init', '-q');
      writeFileSync(path.join(ws, 'a'), 'a\n');
      git(ws, 'add', 'a');
      git(ws, 'commit', '-qm', 'base');
      rmSync(path.join(ws, '.git', 'hooks'), { recursive: true, force: true });
      own(ws);
      const script = [
        `mkdir -p .git/hooks && printf '#!/bin/sh\\ntouch ${marks}/hook\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit`,
        `printf '[core]\\n\\tfsmonitor = touch ${marks}/fsmonitor\\n' > evil.cfg && echo ../evil > .git/commondir; mkdir -p evil && cp evil.cfg evil/config`,
        `mkdir sub && git -C sub init -q && git -C sub config core.fsmonitor "touch ${marks}/fsmonitor-sub; false"`,
        `echo "touch ${marks}/profile" > .profile`,
        'touch ready', 'sleep 60',
      ].join(' && ');
      const argv = ['sandbox', 'run', '--workspace', ws, '--', 'sh', '-c', script];
      const [cmd, full] = unpriv ? ['setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', mode.bin, ...argv]] : [mode.bin, argv];
      const child = spawn(cmd, full, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, HOME: '/nonexistent' } });
      const err = [];
      child.stderr.on('data', (c) => err.push(c));
      const closed = new Promise((res) => child.on('close', (code, signal) => res({ code, signal })));
      for (let i = 0; i < 200 && !existsSync(path.join(ws, 'ready')); i++) await sleep(50);
      assert.ok(existsSync(path.join(ws, 'ready')), 'the session did not get ready');
      // While the session runs, the doors it made are in place (documented): the host must not run git now.
      assert.ok(existsSync(path.join(ws, '.git', 'hooks', 'pre-commit')));
      child.kill('SIGKILL');
      // The keeper holds postern's stderr: its end closes once the keeper is done and gone.
      const t = setTimeout(() => assert.fail('the door-keeper did not finish in 20 s'), 20000);
      const end = await closed;
      clearTimeout(t);
      assert.equal(end.signal, 'SIGKILL');
      const stderr = Buffer.concat(err).toString();
      for (const p of ['.git/hooks/', '.git/commondir', '.profile', 'sub/.git'])
        assert.ok(stderr.includes(`path="${p}"`), `${p} not moved aside: ${stderr}`);
      git(ws, 'status');
      git(ws, 'diff');
      git(ws, 'commit', '-q', '--allow-empty', '-m', 'host');
      gitTry(path.join(ws, 'sub'), 'status');
      execFileSync('bash', ['-lc', 'true'], { env: { ...ENV, HOME: ws }, cwd: ws });
      noMarks();
      assert.ok(existsSync(path.join(ws, '.git', 'hooks.postern-quarantine-1', 'pre-commit')), 'moved, not deleted');
    });

    test('with the workspace as $HOME: git\'s global config the session made is moved aside', async () => {
      const ws = fresh('home');
      git(ws, 'init', '-q');
      own(ws);
      const fsm = (m) => `[core]\\n\\tfsmonitor = touch ${marks}/${m}\\n`;
      const r = await run(ws, `printf '${fsm('gitconfig')}' > .gitconfig && mkdir -p .config/git && ` +
        `printf '${fsm('xdg')}' > .config/git/config && echo '"\\C-m": "touch ${marks}/inputrc\\n"' > .inputrc && echo made`);
      assert.equal(r.code, 0, r.stderr);
      for (const p of ['.gitconfig', '.config/git/', '.inputrc'])
        assert.ok(r.stderr.includes(`path="${p}"`), `${p} not moved aside: ${r.stderr}`);
      execFileSync('git', ['-c', 'safe.directory=*', '-C', ws, 'status'], { env: { PATH: process.env.PATH, HOME: ws }, stdio: 'ignore' });
      noMarks();
    });

    test('quarantine names the session took beforehand keep no door in place', async () => {
      const ws = fresh('collide');
      own(ws);
      const r = await run(ws, `git init -q && git config core.fsmonitor "touch ${marks}/collide; false" && ` +
        'for i in $(seq 1 99); do mkdir .git.postern-quarantine-$i && echo x > .profile.postern-quarantine-$i || exit 1; done && ' +
        `echo "touch ${marks}/profile" > .profile && echo made`);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /made/);
      assert.doesNotMatch(r.stderr, /could not move aside/);
      assert.match(r.stderr, /path=".git" now=".git.postern-quarantine-[0-9a-f]{16}"/);
      assert.equal(existsSync(path.join(ws, '.git')), false);
      assert.equal(existsSync(path.join(ws, '.profile')), false);
      const st = gitTry(ws, 'status');
      assert.equal(st.ok, false);
      assert.match(st.out, /not a git repository/);
      execFileSync('bash', ['-lc', 'true'], { env: { ...ENV, HOME: ws }, cwd: ws });
      noMarks();
    });

    test('a symlink on the way to a door ($HOME/.config -> cfg) is moved aside', async () => {
      const ws = fresh('homelink');
      git(ws, 'init', '-q');
      own(ws);
      const r = await run(ws, `mkdir -p cfg/git cfg/fish && printf '[core]\\n\\tfsmonitor = touch ${marks}/xdg-link\\n' > cfg/git/config && ` +
        'ln -s cfg .config && echo made');
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stderr.includes('path=".config" now=".config.postern-quarantine-1"'), r.stderr);
      execFileSync('git', ['-c', 'safe.directory=*', '-C', ws, 'status'], { env: { PATH: process.env.PATH, HOME: ws }, stdio: 'ignore' });
      noMarks();
      assert.ok(existsSync(path.join(ws, 'cfg', 'git', 'config')), 'the link is moved, what it pointed to is kept');
    });

    test('a stopped rebase the session left: host `git rebase --continue` runs none of its exec lines', async () => {
      const ws = fresh('rebase');
      git(ws, 'init', '-q');
      for (const n of ['a', 'b']) {
        writeFileSync(path.join(ws, n), `${n}\n`);
        git(ws, 'add', n);
        git(ws, 'commit', '-qm', n);
      }
      own(ws);
      const r = await run(ws, `printf '#!/bin/sh\\nprintf "break\\\\nexec touch ${marks}/rebase-exec\\\\n" > "$1"\\n' > /tmp/ed && chmod +x /tmp/ed && ` +
        'GIT_SEQUENCE_EDITOR=/tmp/ed git -c user.email=a@b -c user.name=n rebase -q -i HEAD~1 >/dev/null 2>&1; ' +
        'test -d .git/rebase-merge && grep -q exec .git/rebase-merge/git-rebase-todo && echo stopped');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /stopped/);
      assert.ok(r.stderr.includes('path=".git/rebase-merge/"'), r.stderr);
      gitTry(ws, 'rebase', '--continue');
      noMarks();
      assert.ok(existsSync(path.join(ws, '.git', 'rebase-merge.postern-quarantine-1', 'git-rebase-todo')), 'moved, not deleted');
    });

    test('what the shell start-up files source in turn (.bash_aliases, .bash_completion, ...) is moved aside', async () => {
      const ws = fresh('sourced');
      // Debian's skeleton .bashrc sources ~/.bash_aliases; the session cannot change .bashrc (read-only).
      writeFileSync(path.join(ws, '.bashrc'), '[ -f ~/.bash_aliases ] && . ~/.bash_aliases\n[ -f ~/.bash_completion ] && . ~/.bash_completion\n');
      own(ws);
      const r = await run(ws, `echo "touch ${marks}/aliases" > .bash_aliases && echo "touch ${marks}/completion" > .bash_completion && ` +
        `mkdir -p .bashrc.d .local/share/bash-completion/completions .config/fish .ssh && echo "touch ${marks}/fish" > .config/fish/config.fish && ` +
        `echo "ProxyCommand touch ${marks}/ssh" > .ssh/config && echo made`);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /made/);
      for (const p of ['.bash_aliases', '.bash_completion', '.bashrc.d/', '.local/share/bash-completion/', '.config/fish/', '.ssh/'])
        assert.ok(r.stderr.includes(`path="${p}"`), `${p} not moved aside: ${r.stderr}`);
      execFileSync('bash', ['-ic', 'true'], { env: { ...ENV, HOME: ws }, cwd: ws, stdio: 'ignore' });
      noMarks();
    });

    test('rights the session takes away (chmod 0 of the top, 0444 or 0555 of a directory) hide no door', async () => {
      const ws = fresh('modes');
      own(ws);
      const fsm = (m) => `core.fsmonitor "touch ${marks}/${m}; false"`;
      let r = await run(ws, `git init -q && git config ${fsm('top')} && mkdir -p sub/deep sub/ro && git -C sub/deep init -q && ` +
        `git -C sub/deep config ${fsm('unsearchable')} && git -C sub/ro init -q && git -C sub/ro config ${fsm('unwritable')} && ` +
        'chmod 0444 sub/deep && chmod 0555 sub/ro && chmod 0 /workspace && echo made');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /made/);
      assert.doesNotMatch(r.stderr, /could not start|could not move aside|cannot read/);
      // A person restores the rights and runs git in each place: nothing the session chose runs.
      execFileSync('chmod', ['-R', 'u+rwX', ws]);
      assert.equal(existsSync(path.join(ws, '.git')), false);
      assert.deepEqual(readdirSync(path.join(ws, 'sub')).sort(), ['deep', 'ro']);
      for (const d of ['', 'sub/deep', 'sub/ro']) assert.match(gitTry(path.join(ws, d), 'status').out, /not a git repository/);
      noMarks();
      // An existing repository whose .git the session makes unwritable over a hooks/ it made.
      const ws2 = fresh('modes2');
      git(ws2, 'init', '-q');
      git(ws2, 'commit', '-q', '--allow-empty', '-m', 'base');
      rmSync(path.join(ws2, '.git', 'hooks'), { recursive: true, force: true });
      own(ws2);
      r = await run(ws2, `mkdir .git/hooks && printf '#!/bin/sh\\ntouch ${marks}/hook-ro\\n' > .git/hooks/pre-commit && ` +
        'chmod +x .git/hooks/pre-commit && chmod 0555 .git && echo made');
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stderr.includes('path=".git/hooks/"'), r.stderr);
      execFileSync('chmod', ['u+w', path.join(ws2, '.git')]);
      git(ws2, 'commit', '-q', '--allow-empty', '-m', 'host');
      noMarks();
    });

    test('a repository past the sweep\'s depth cap, reached through a link, is not left in place', async () => {
      const ws = fresh('deep');
      own(ws);
      const r = await run(ws, 'd=$(for i in $(seq 1 66); do printf d/; done) && mkdir -p $d && git -C $d init -q && ' +
        `git -C $d config core.fsmonitor "touch ${marks}/too-deep; false" && ln -s $d easy && echo made`);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /made/);
      assert.match(r.stderr, /stopped early.*reason="depth cap"/);
      assert.match(gitTry(path.join(ws, 'easy'), 'status').out, /cannot change to|No such file|not a git repository/);
      noMarks();
    });

    test('a `.git` file (linked worktree) is kept as it is', async () => {
      const ws = fresh('linked');
      writeFileSync(path.join(ws, '.git'), 'gitdir: /nonexistent/real\n');
      own(ws);
      const r = await run(ws, '(echo "gitdir: evil" > .git) 2>/dev/null && echo written; true');
      assert.equal(r.stdout, '');
      assert.equal(readFileSync(path.join(ws, '.git'), 'utf8'), 'gitdir: /nonexistent/real\n');
    });
  });
}
