#!/usr/bin/env python3
"""The man pages against the binary's --help, so neither drifts (label `cli`).

Usage: man_pages_test.py KMSFS MANDIR (MANDIR: the built, uncompressed pages,
build/packaging/man). The pages are read as man(1) renders them (`man -l`), and:
  - man renders each one without a warning (MANWIDTH=80 man --warnings -l);
  - kmsfs(1) has a subsection `kmsfs COMMAND ...` for every command of `kmsfs --help`
    (and every subcommand of keyring and trust), and no subsection for a command that
    does not exist;
  - in each subsection, every option of `kmsfs COMMAND --help` appears, and every option
    the subsection defines (its indented option lines) exists in that --help;
  - every --option named anywhere in kmsfs(1) exists in some command's --help;
  - mount.kmsfs(8) and kmsfs-mount.conf(5) name every long option of `kmsfs mount` as
    its -o / config key (key_ttl for --key-ttl).
"""
import os
import re
import subprocess
import sys
import unittest

KMSFS = sys.argv.pop(1) if len(sys.argv) > 2 else None
MANDIR = sys.argv.pop(1) if len(sys.argv) > 1 else None
OPT = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")
GLOBAL = {"-h", "--help", "--version"}


def kmsfs_help(*words):
    out = subprocess.run([KMSFS, *words, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kmsfs {' '.join(words)} --help: exit {out.returncode}: {out.stderr}"
    return out.stdout


def help_sections(text):
    """{'Options': [lines], 'Subcommands': [lines], ...} of one --help text."""
    sections, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"^(\w[\w ]*):$", line)
        if m:
            cur = sections.setdefault(m.group(1), [])
        elif not line.strip():
            cur = None
        elif cur is not None:
            cur.append(line)
    return sections


def commands():
    """{'keyring create': {'--no-passphrase', ...}, ...} for every leaf command."""
    out = {}

    def walk(path):
        sec = help_sections(kmsfs_help(*path))
        subs = [l.split()[0] for l in sec.get("Subcommands", []) if re.match(r"^  \S", l)]
        if path and path[-1] == "help":
            subs = []  # `kmsfs help --help` lists trust's subcommands (CLI11 quirk)
        opts = set()
        for l in sec.get("Options", []):
            m = re.match(r"^  ((?:-[A-Za-z],)?--?[A-Za-z][\w-]*)", l)
            if m:
                opts.update(m.group(1).split(","))
        if subs and path:
            for s in subs:
                walk(path + [s])
        elif subs:
            for s in subs:
                walk([s])
        else:
            out[" ".join(path)] = opts - GLOBAL
    walk([])
    return out


def render(page, width="1000"):
    env = dict(os.environ, MANWIDTH=width, LANG="C.UTF-8", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="")
    out = subprocess.run(["man", "--warnings", "-l", os.path.join(MANDIR, page)], env=env,
                         capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout.replace("\u2010", "-").replace("\u2212", "-"), out.stderr


class ManPages(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.commands = commands()
        cls.mount_keys = {o[2:].replace("-", "_") for o in cls.commands["mount"]
                          if o.startswith("--") and o != "--config"}

    def test_every_page_renders_without_warnings(self):
        for page in ("kmsfs.1", "mount.kmsfs.8", "kmsfs-mount.conf.5"):
            rc, out, err = render(page, "80")
            self.assertEqual(rc, 0, f"man -l {page}: {err}")
            self.assertEqual(err.strip(), "", f"man --warnings -l {page}")
            self.assertIn("NAME", out)

    def kmsfs1_subsections(self):
        """{'keyring create': text of its subsection} from kmsfs(1) as rendered."""
        _, out, _ = render("kmsfs.1")
        subs, cur = {}, None
        for line in out.splitlines():
            if re.match(r"^\S", line):  # a section heading ends a subsection
                cur = None
            m = re.match(r"^   kmsfs((?: [a-z][a-z-]*)+)", line)
            if m:
                name = m.group(1).strip()
                self.assertNotIn(name, subs, f"two subsections for kmsfs {name}")
                cur = subs.setdefault(name, [])
            elif cur is not None:
                cur.append(line)
        return subs, out

    def test_every_command_has_its_subsection_and_no_other(self):
        subs, _ = self.kmsfs1_subsections()
        self.assertEqual(set(self.commands) - set(subs), set(), "commands missing from kmsfs(1)")
        self.assertEqual(set(subs) - set(self.commands), set(), "kmsfs(1) documents commands that do not exist")

    def test_every_option_documented_under_its_command(self):
        subs, _ = self.kmsfs1_subsections()
        for cmd, opts in self.commands.items():
            text = "\n".join(subs.get(cmd, []))
            named = set(OPT.findall(text))
            self.assertEqual(opts - named, set(), f"kmsfs {cmd}: options of --help missing from kmsfs(1)")
            # The subsection's option lines (as man indents them) define options.
            defined = set()
            for line in subs.get(cmd, []):
                if re.match(r"^ {7}-", line):
                    defined.update(OPT.findall(line))
            self.assertEqual(defined - opts, set(), f"kmsfs {cmd}: kmsfs(1) defines options --help lacks")

    def test_every_option_named_exists(self):
        _, out = self.kmsfs1_subsections()
        known = set().union(*self.commands.values()) | GLOBAL
        named = {o for o in OPT.findall(out) if o.startswith("--")}
        self.assertEqual(named - known, set(), "kmsfs(1) names options no command has")

    def test_mount_options_in_the_helper_and_config_pages(self):
        for page in ("mount.kmsfs.8", "kmsfs-mount.conf.5"):
            _, out, _ = render(page)
            words = set(re.findall(r"(?<![\w-])([a-z][a-z_]*)(?==|\b)", out))
            self.assertEqual(self.mount_keys - words, set(), f"{page} lacks kmsfs mount options")
            # And names none that kmsfs mount lacks (option lines of the keys' section).
            keys = set(re.findall(r"^ {7}([a-z][a-z_]+)(?==|,|$)", out, re.M))
            keys |= set(re.findall(r", ([a-z][a-z_]+)(?==|,|$)", "\n".join(
                l for l in out.splitlines() if re.match(r"^ {7}[a-z]", l)), re.M))
            generic = {"backing", "mountpoint", "options", "ro", "nosuid", "nodev", "noexec", "noatime",
                       "allow_other", "default_permissions", "badname", "nofail", "auto", "noauto", "user",
                       "users", "nouser", "owner", "group", "comment", "defaults", "rw"}
            self.assertEqual(keys - self.mount_keys - generic, set(), f"{page} names options kmsfs mount lacks")


if __name__ == "__main__":
    if not KMSFS or not MANDIR:
        sys.exit("usage: man_pages_test.py KMSFS MANDIR")
    unittest.main(verbosity=2)
