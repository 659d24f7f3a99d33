// Run a Python script in the real MicroPython interpreter (WebAssembly build) under Node.
//
// Usage:
//   node run.mjs [--heap 256k] [--mount HOSTDIR:MPDIR]... [--file HOSTFILE:MPFILE]...
//                [--path MPDIR]... [--fetch MPFILE:HOSTFILE]... [--then SCRIPT2.py]...
//                script.py [args...]
//
//   --heap N          initial MicroPython GC heap (bytes, or with k/m suffix; default 256k).
//                     This build grows its heap on demand (split heap), so N is not a RAM cap:
//                     enforce budgets in Python and read gc.mem_alloc() for usage.
//   --mount H:M       copy host directory H recursively into the in-memory FS at M
//                     (skips __pycache__, node_modules and dot-entries).
//   --file H:M        copy one host file into the in-memory FS at M.
//   --path M          prepend M to sys.path (the default path already has '' and /lib).
//   --fetch M:H       after the script ends (also on error), copy FS file M to host file H if it exists.
//   --then S.py       after script.py, run S.py in the same interpreter and globals (in order).
//                     This build's gc.collect() frees nothing allocated during the current
//                     runPython call; memory is only reclaimed once control went back to JS,
//                     so heap measurements need a gc.collect() at the start of a later script.
//   script.py         host path; copied to /app/<name> and run as __main__ with sys.argv = [name, args...].
//
// The script can `import runhost` for runhost.cpu_us(): this process's CPU time in microseconds,
// a steadier clock than time.ticks_us() when the machine is shared.
// Exit codes: 0 ok; 1 uncaught Python exception (traceback on stderr); n for sys.exit(n);
// 2 for a usage error of this runner. Script stdout/stderr go to the process stdout/stderr.
// Example: node run.mjs --mount ../../contract:/lib/contract --mount ../micropython:/lib t.py
import fs from "node:fs";
import path from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript/micropython.mjs";

function usage(msg) {
  process.stderr.write(`run.mjs: ${msg}\n`);
  process.exit(2);
}

function parseSize(text) {
  const m = /^(\d+)([kKmM]?)$/.exec(text || "");
  if (!m) usage(`bad size '${text}'`);
  const mult = { "": 1, k: 1024, K: 1024, m: 1 << 20, M: 1 << 20 }[m[2]];
  return parseInt(m[1], 10) * mult;
}

function splitPair(text, flag) {
  const i = (text || "").lastIndexOf(":");
  if (i <= 0 || i === text.length - 1) usage(`${flag} needs HOST:MP or MP:HOST, got '${text}'`);
  return [text.slice(0, i), text.slice(i + 1)];
}

function parseArgs(argv) {
  const opts = { heap: 256 * 1024, mounts: [], files: [], paths: [], fetches: [], thens: [], script: null, args: [] };
  let i = 0;
  while (i < argv.length) {
    const a = argv[i];
    if (a === "--heap") opts.heap = parseSize(argv[++i]);
    else if (a === "--mount") opts.mounts.push(splitPair(argv[++i], a));
    else if (a === "--file") opts.files.push(splitPair(argv[++i], a));
    else if (a === "--path") opts.paths.push(argv[++i] || usage("--path needs a directory"));
    else if (a === "--fetch") opts.fetches.push(splitPair(argv[++i], a));
    else if (a === "--then") opts.thens.push(argv[++i] || usage("--then needs a script"));
    else if (a.startsWith("--")) usage(`unknown option ${a}`);
    else {
      opts.script = a;
      opts.args = argv.slice(i + 1);
      break;
    }
    i++;
  }
  if (!opts.script) usage("no script given");
  return opts;
}

function copyFile(FS, host, mp) {
  FS.mkdirTree(path.posix.dirname(mp));
  FS.writeFile(mp, fs.readFileSync(host));
}

function copyTree(FS, host, mp) {
  if (!fs.statSync(host).isDirectory()) usage(`--mount: ${host} is not a directory`);
  FS.mkdirTree(mp);
  for (const ent of fs.readdirSync(host, { withFileTypes: true })) {
    if (ent.name.startsWith(".") || ent.name === "__pycache__" || ent.name === "node_modules") continue;
    const h = path.join(host, ent.name);
    const m = path.posix.join(mp, ent.name);
    if (ent.isDirectory()) copyTree(FS, h, m);
    else if (ent.isFile()) copyFile(FS, h, m);
  }
}

function exists(FS, p) {
  try {
    FS.stat(p);
    return true;
  } catch {
    return false;
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(opts.script)) usage(`script not found: ${opts.script}`);
  // Raw byte callbacks, buffered here: line buffering would drop an unterminated last line.
  const out = [];
  const err = [];
  const mp = await loadMicroPython({
    heapsize: opts.heap,
    linebuffer: false,
    stdout: (b) => out.push(b[0]),
    stderr: (b) => err.push(b[0]),
  });
  const flush = () => {
    if (out.length) process.stdout.write(Buffer.from(out.splice(0)));
    if (err.length) process.stderr.write(Buffer.from(err.splice(0)));
  };
  // `import runhost; runhost.cpu_us()`: CPU time of this process (benchmarks on a shared machine).
  mp.registerJsModule("runhost", {
    cpu_us: () => {
      const u = process.cpuUsage();
      return u.user + u.system;
    },
  });
  for (const [h, m] of opts.mounts) copyTree(mp.FS, h, m);
  for (const [h, m] of opts.files) {
    if (!fs.existsSync(h)) usage(`--file: not found: ${h}`);
    copyFile(mp.FS, h, m);
  }
  const name = path.basename(opts.script);
  const mpScript = `/app/${name}`;
  copyFile(mp.FS, opts.script, mpScript);
  const scripts = [mpScript];
  opts.thens.forEach((s, k) => {
    if (!fs.existsSync(s)) usage(`--then: script not found: ${s}`);
    scripts.push(`/app/then${k}_${path.basename(s)}`);
    copyFile(mp.FS, s, scripts[scripts.length - 1]);
  });
  const boot = [
    "import sys",
    "del sys.argv[:]",
    `sys.argv.extend(${JSON.stringify([name, ...opts.args])})`,
    ...opts.paths.slice().reverse().map((p) => `sys.path.insert(0, ${JSON.stringify(p)})`),
    "sys.path.insert(0, '/app')",
    `__file__ = ${JSON.stringify(mpScript)}`,
  ].join("\n");
  const run = (p) => `exec(compile(open(${JSON.stringify(p)}).read(), ${JSON.stringify(p)}, 'exec'))`;
  let code = 0;
  try {
    mp.runPython(boot);
    for (const p of scripts) mp.runPython(run(p));
  } catch (e) {
    const text = String(e && e.message !== undefined ? e.message : e);
    if (e && e.type === "SystemExit") {
      const m = /SystemExit: ?(-?\d+)?\s*$/.exec(text.trim());
      code = m && m[1] !== undefined ? parseInt(m[1], 10) & 255 : 0;
      if (!m) {
        err.push(...Buffer.from(text));
        code = 1;
      }
    } else {
      err.push(...Buffer.from(text.endsWith("\n") ? text : text + "\n"));
      code = 1;
    }
  }
  flush();
  for (const [m, h] of opts.fetches) {
    if (exists(mp.FS, m)) fs.writeFileSync(h, mp.FS.readFile(m));
  }
  process.exitCode = code;
}

await main();
