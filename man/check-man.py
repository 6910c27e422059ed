# SPDX-License-Identifier: MIT
"""The man pages name everything the programs take.

    check-man.py CORRAL CORRALD corral.1 corral-bench.1 corrald.8 corral.conf.5
                 docs/daemon.md CORRAL-BENCH

From sources other than the page generators: `corral --help` and
`corral CMD --help` (commands, their options, the global options),
`corrald --help` (flags), docs/daemon.md's table (config file keys) and
`corrald --dump-api-md` (methods and error names), `corral-bench --help`
(scenarios and options).  Each must appear in
the page that documents it; groff must format every page without warnings.
"""
import re
import shutil
import subprocess
import sys

corral, corrald, page1, page1b, page8, page5, daemon_md, bench = sys.argv[1:9]
failures = []


def plain(path):
    """The page's text without roff escapes: what a reader sees."""
    with open(path) as f:
        src = f.read()
    src = re.sub(r"\\f[BIRP]", "", src)
    src = src.replace("\\-", "-").replace("\\&", "").replace("\\e", "\\")
    return src


def need(text, word, page, what):
    if word not in text:
        failures.append("%s: %s %r is missing" % (page, what, word))


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


man1, man1b, man8, man5 = plain(page1), plain(page1b), plain(page8), plain(page5)

# corral: the commands of its help, and each one's options.
top = run(corral, "--help")
commands = re.findall(r"^  ([a-z][a-z-]*)  +\S", top.split("Commands:")[1].split("\n\n")[0],
                      re.M)
if len(commands) < 10:
    failures.append("corral --help lists only %r" % commands)
for opt in re.findall(r"--([a-z][a-z-]*)", top.split("Global options")[1]):
    need(man1, "--" + opt, page1, "global option")
for cmd in commands:
    need(man1, "corral " + cmd, page1, "command")
    helptext = run(corral, cmd, "--help")
    own = helptext.split("Global options:")[0]
    if "Options:" in own:
        for opt in re.findall(r"^  (?:-\w, )?--([a-z][a-z-]*)", own.split("Options:")[1], re.M):
            section = man1.split("corral " + cmd, 1)[-1]
            need(section, "--" + opt, page1, "option of %s" % cmd)
for code in range(0, 8):
    need(man1, ".B %d" % code, page1, "exit code")

# corrald: every flag of its help.
flags = re.findall(r"^  --([a-z][a-z-]*)", run(corrald, "--help"), re.M)
if len(flags) < 15:
    failures.append("corrald --help lists only %r" % flags)
for flag in flags:
    need(man8, "--" + flag, page8, "flag")

# corral.conf: every file key of docs/daemon.md's table.
with open(daemon_md) as f:
    md = f.read()
keys = re.findall(r"^\| `--[a-z-]+[^|]*\| `([a-z_]+)`", md, re.M)
if len(keys) < 10:
    failures.append("docs/daemon.md's flag table gives only %r" % keys)
for key in keys:
    need(man5, key + " =", page5, "key")

# corrald(8): every method and error of the API.
api = run(corrald, "--dump-api-md")
for method in re.findall(r"^### (\S+)", api, re.M):
    need(man8, method, page8, "method")
for name in re.findall(r"^\| \d+ \| `([a-z-]+)`", api, re.M):
    need(man8, name, page8, "error")

# corral-bench(1): every scenario and option of its help.
bhelp = run(bench, "--help")
scenarios = re.findall(r"^  ([a-z][a-z0-9-]*)  +\S", bhelp.split("Scenarios:")[1].split("\n\n")[0],
                       re.M)
if len(scenarios) < 5:
    failures.append("corral-bench --help lists only %r" % scenarios)
for sc in scenarios:
    need(man1b, sc, page1b, "scenario")
for opt in re.findall(r"^  --([a-z][a-z-]*)", bhelp.split("Options:")[1], re.M):
    need(man1b, "--" + opt, page1b, "corral-bench option")

groff = shutil.which("groff")
if groff:
    for page in (page1, page1b, page8, page5):
        r = subprocess.run([groff, "-man", "-ww", "-z", page], capture_output=True, text=True)
        if r.returncode or r.stderr.strip():
            failures.append("groff on %s: %s" % (page, r.stderr.strip()))

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("ok: %d commands, %d flags, %d keys in the man pages" %
      (len(commands), len(flags), len(keys)))
